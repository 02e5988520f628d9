"""slomo_core: the pure library (model, interpolation, video I/O, timestamps). No Prefect, no Ray."""

__version__ = "0.1.0"
