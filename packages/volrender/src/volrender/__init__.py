"""Differentiable SDF and feature-field volume rendering (NeuS), reprojection and voxel ray casting
with NVIDIA Warp kernels and PyTorch autograd.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
