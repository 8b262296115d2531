"""RayIoU, mAVE, OccScore, voxel IoU, depth and KITTI scene-flow metrics with mergeable
accumulators and a scoring CLI.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
