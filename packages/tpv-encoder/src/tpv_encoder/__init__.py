"""Images to a tri-perspective-view feature volume: timm backbone + FPN, pure-PyTorch multi-scale
deformable attention, TPVFormer-style encoder.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
