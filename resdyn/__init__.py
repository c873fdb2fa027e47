"""resdyn: dynamical-systems stability constants of dimension-preserving ResNets."""

__version__ = "0.1.0"
