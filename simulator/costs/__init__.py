"""What things cost: pure functions over plain data (the cost table, profiles), no torch, no clock."""
