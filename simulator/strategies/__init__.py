"""Training strategies: one base class owning the round loop, one small subclass per method."""
