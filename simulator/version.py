"""The package's version, written into every run folder and summary."""

__version__ = "0.1.0"
