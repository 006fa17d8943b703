"""Datasets read from their standard files, and client partitions."""
