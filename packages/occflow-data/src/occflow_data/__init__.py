"""Sample schema, nuScenes/SemanticKITTI/KITTI-tracking readers and a procedural synthetic driving
world with full ground truth.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
