"""The procedural synthetic driving world: generation, Warp rendering, ground truth and writers of
the nuScenes, KITTI odometry + SemanticKITTI and KITTI tracking layouts.

Command line: ``python -m occflow_data.synth --layout nuscenes --out DIR --scenes 2 --frames 10``.
"""

from ._default import default_world, default_world_config
from ._geometry import Boxes
from ._gt import (
    Occupancy,
    annotation_boxes,
    camera_flow,
    camera_visibility,
    lidar_visibility,
    pixel_masks,
    voxelize,
)
from ._io import MARKER
from ._kitti import KittiConfig, write_kitti_odometry, write_kitti_tracking
from ._nuscenes import MINI_SCENES, NuScenesConfig, write_nuscenes
from ._paths import Path, SpeedProfile, Trajectory
from ._render import CameraFrame, LidarSweep, Renderer
from ._rigs import Camera, Lidar, Rig, kitti_rig, nuscenes_rig
from ._world import Agent, Ground, World, WorldConfig, make_world

__all__ = [
    "MARKER",
    "MINI_SCENES",
    "Agent",
    "Boxes",
    "Camera",
    "CameraFrame",
    "Ground",
    "Lidar",
    "LidarSweep",
    "KittiConfig",
    "NuScenesConfig",
    "Occupancy",
    "Path",
    "Renderer",
    "Rig",
    "SpeedProfile",
    "Trajectory",
    "World",
    "WorldConfig",
    "annotation_boxes",
    "camera_flow",
    "camera_visibility",
    "default_world",
    "default_world_config",
    "kitti_rig",
    "lidar_visibility",
    "make_world",
    "nuscenes_rig",
    "pixel_masks",
    "voxelize",
    "write_kitti_odometry",
    "write_kitti_tracking",
    "write_nuscenes",
]
