"""RayIoU, mAVE, OccScore, voxel IoU, depth and KITTI scene-flow metrics with mergeable
accumulators and a scoring CLI.
"""

from ._classes import FREE_LABEL, MOVING_CLASSES, OCC3D_CLASSES
from ._depth import DEPTH_METRICS, DepthAccumulator, depth_metrics
from ._evaluate import evaluate_occ3d, format_table
from ._io import (
    Occ3DScene,
    PredictionFileError,
    read_gt_sample,
    read_occ3d_scenes,
    read_prediction,
)
from ._rayiou import (
    RAYIOU_THRESHOLDS,
    RayCast,
    RayIoUAccumulator,
    cast_rayiou_rays,
    occ_score,
    rayiou_counts,
    rayiou_counts_from_rays,
)
from ._rays import NUSCENES_LIDAR_OFFSET, lidar_ray_directions, ray_origins
from ._sceneflow import (
    KITTI_BASELINE,
    KITTI_THRESHOLDS,
    PAPER_THRESHOLDS,
    SceneFlowAccumulator,
    disparity_from_depth,
    scene_flow_metrics,
)
from ._voxel import VoxelIoUAccumulator, voxel_confusion

__version__ = "0.1.0"

__all__ = [
    "DEPTH_METRICS",
    "FREE_LABEL",
    "KITTI_BASELINE",
    "KITTI_THRESHOLDS",
    "MOVING_CLASSES",
    "NUSCENES_LIDAR_OFFSET",
    "OCC3D_CLASSES",
    "PAPER_THRESHOLDS",
    "RAYIOU_THRESHOLDS",
    "DepthAccumulator",
    "Occ3DScene",
    "PredictionFileError",
    "RayCast",
    "RayIoUAccumulator",
    "SceneFlowAccumulator",
    "VoxelIoUAccumulator",
    "__version__",
    "cast_rayiou_rays",
    "depth_metrics",
    "disparity_from_depth",
    "evaluate_occ3d",
    "format_table",
    "lidar_ray_directions",
    "occ_score",
    "ray_origins",
    "rayiou_counts",
    "rayiou_counts_from_rays",
    "read_gt_sample",
    "read_occ3d_scenes",
    "read_prediction",
    "scene_flow_metrics",
    "voxel_confusion",
]
