"""Ego-motion alignment of past feature volumes and the Backward-Forward Attention Module of Let
Occ Flow.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
