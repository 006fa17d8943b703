"""What is computed: the models, data, training steps, aggregation and strategies' learning rules."""
