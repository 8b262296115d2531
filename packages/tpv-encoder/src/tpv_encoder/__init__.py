"""Images to a tri-perspective-view feature volume: timm backbone + FPN, pure-PyTorch multi-scale
deformable attention, TPVFormer-style encoder.
"""

from ._deform_attn import MultiScaleDeformableAttention, ms_deform_attn

__version__ = "0.1.0"

__all__ = [
    "MultiScaleDeformableAttention",
    "__version__",
    "ms_deform_attn",
]
