"""Scenario files: the schema, loading and validation, device and link profiles, cut policies."""
