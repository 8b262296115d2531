"""Differentiable SDF and feature-field volume rendering (NeuS), reprojection and voxel ray casting
with NVIDIA Warp kernels and PyTorch autograd.
"""

from ._grid import LETOCCFLOW_NUSCENES, OCC3D_NUSCENES, SEMANTIC_KITTI, GridSpec
from ._raycast import VoxelHits, raycast_voxels
from ._regularisers import eikonal_loss, hessian_loss, sdf_gradient
from ._render import RenderResult, ReprojectionResult, render_rays, render_reprojection
from ._sample import sample_vertex_field

__version__ = "0.1.0"

__all__ = [
    "LETOCCFLOW_NUSCENES",
    "OCC3D_NUSCENES",
    "SEMANTIC_KITTI",
    "GridSpec",
    "RenderResult",
    "ReprojectionResult",
    "VoxelHits",
    "__version__",
    "eikonal_loss",
    "hessian_loss",
    "raycast_voxels",
    "render_rays",
    "render_reprojection",
    "sample_vertex_field",
    "sdf_gradient",
]
