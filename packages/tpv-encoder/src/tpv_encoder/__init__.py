"""Images to a tri-perspective-view feature volume: timm backbone + FPN, pure-PyTorch multi-scale
deformable attention, TPVFormer-style encoder.
"""

from ._backbone import FPN, ImageBackbone, load_backbone_checkpoint
from ._config import PRESETS, TPVEncoderConfig
from ._deform_attn import MultiScaleDeformableAttention, ms_deform_attn
from ._encoder import TPVEncoder, TPVPlanes, fourier_encode, tpv_to_volume
from ._geometry import project_to_cameras
from ._pretrained import PACKAGED_IMAGENET_WEIGHTS, imagenet_state_dict

__version__ = "0.2.0"

__all__ = [
    "FPN",
    "PRESETS",
    "ImageBackbone",
    "MultiScaleDeformableAttention",
    "PACKAGED_IMAGENET_WEIGHTS",
    "TPVEncoder",
    "TPVEncoderConfig",
    "TPVPlanes",
    "__version__",
    "fourier_encode",
    "imagenet_state_dict",
    "load_backbone_checkpoint",
    "ms_deform_attn",
    "project_to_cameras",
    "tpv_to_volume",
]
