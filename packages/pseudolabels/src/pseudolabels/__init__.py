"""2-D training cues made once and cached: optical flow, tracking flow, movable-object masks, LiDAR
depth maps.
"""

from ._cli import main
from ._flow import (
    DISFlow,
    FlowEstimator,
    RAFTFlow,
    ScaledFlow,
    TorchFlowEstimator,
    forward_backward_valid,
    load_weights,
    pixel_grid,
    sample_bilinear,
)
from ._geometry import (
    KITTI_BASELINE_M,
    box_corners,
    camera_motion,
    densify_depth,
    depth_to_disparity,
    lidar_depth_map,
    project_boxes_mask,
    rigid_flow,
)
from ._masks import (
    GEOMETRIC_MASK_THRESHOLD_PX,
    SegmentationModel,
    TorchSegmenter,
    geometric_movable_mask,
    residual_flow,
)
from ._pipeline import CueConfig, DatasetConfig, RunReport, VerifyReport, make_cues, verify_cache
from ._track import ChainedFlowTracker, KeyframeTracker, chain_flows
from ._version import __version__

__all__ = [
    "GEOMETRIC_MASK_THRESHOLD_PX",
    "KITTI_BASELINE_M",
    "ChainedFlowTracker",
    "CueConfig",
    "DISFlow",
    "DatasetConfig",
    "FlowEstimator",
    "KeyframeTracker",
    "RAFTFlow",
    "RunReport",
    "ScaledFlow",
    "SegmentationModel",
    "TorchFlowEstimator",
    "TorchSegmenter",
    "VerifyReport",
    "__version__",
    "box_corners",
    "camera_motion",
    "chain_flows",
    "densify_depth",
    "depth_to_disparity",
    "forward_backward_valid",
    "geometric_movable_mask",
    "lidar_depth_map",
    "load_weights",
    "main",
    "make_cues",
    "pixel_grid",
    "project_boxes_mask",
    "residual_flow",
    "rigid_flow",
    "sample_bilinear",
    "verify_cache",
]
