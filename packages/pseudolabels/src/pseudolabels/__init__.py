"""2-D training cues made once and cached: optical flow, tracking flow, movable-object masks, LiDAR
depth maps.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
