"""The Let Occ Flow model, self-supervised losses and two-stage accelerate training, evaluation and
prediction.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
