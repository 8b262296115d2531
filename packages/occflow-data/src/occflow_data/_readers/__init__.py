"""Dataset readers: nuScenes, SemanticKITTI (odometry layout) and KITTI tracking."""

from ._base import FrameInfo, ReaderSummary, SequenceConfig, SequenceDataset
from ._kitti import (
    SEMANTIC_KITTI_SPLITS,
    SEMANTIC_KITTI_TO_OCC3D,
    KittiTrackingSequences,
    SemanticKittiSequences,
    oxts_poses,
    read_kitti_calib,
)
from ._nuscenes import NUSCENES_CAMERAS, NuScenesSequences, load_occ3d

__all__ = [
    "NUSCENES_CAMERAS",
    "SEMANTIC_KITTI_SPLITS",
    "SEMANTIC_KITTI_TO_OCC3D",
    "FrameInfo",
    "KittiTrackingSequences",
    "NuScenesSequences",
    "ReaderSummary",
    "SemanticKittiSequences",
    "SequenceConfig",
    "SequenceDataset",
    "load_occ3d",
    "oxts_poses",
    "read_kitti_calib",
]
