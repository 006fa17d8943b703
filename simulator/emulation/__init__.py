"""Real execution: client and server processes over shaped links in network namespaces."""
