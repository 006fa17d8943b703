"""hetero-splitee-sim: a discrete-event simulator of split learning with early exits on heterogeneous fleets."""

__all__ = ["__version__"]

__version__ = "0.1.0"
