"""Ego-motion alignment of past feature volumes and the Backward-Forward Attention Module of Let
Occ Flow.
"""

from ._align import align_history, cell_centres, relative_poses
from ._attention import BackwardForwardAttention, TemporalBEVAttention, TemporalDeformableAttention
from ._bev import BEVVolumeFusion, slices_to_volume, volume_to_bev
from ._config import PRESETS, VARIANTS, TemporalFusionConfig, Variant
from ._fusion import ConcatConvFusion, TemporalFusion

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "VARIANTS",
    "BEVVolumeFusion",
    "BackwardForwardAttention",
    "ConcatConvFusion",
    "TemporalBEVAttention",
    "TemporalDeformableAttention",
    "TemporalFusion",
    "TemporalFusionConfig",
    "Variant",
    "__version__",
    "align_history",
    "cell_centres",
    "relative_poses",
    "slices_to_volume",
    "volume_to_bev",
]
