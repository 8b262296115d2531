"""Sample schema, nuScenes/SemanticKITTI/KITTI-tracking readers and a procedural synthetic driving
world with full ground truth.
"""

from ._schema import (
    FREE_LABEL,
    NUM_OCC_LABELS,
    Batch,
    Frame,
    FrameBatch,
    GroundTruth,
    GroundTruthBatch,
    Sample,
    collate_samples,
    relative_pose,
)

__version__ = "0.1.0"

__all__ = [
    "FREE_LABEL",
    "NUM_OCC_LABELS",
    "Batch",
    "Frame",
    "FrameBatch",
    "GroundTruth",
    "GroundTruthBatch",
    "Sample",
    "__version__",
    "collate_samples",
    "relative_pose",
]
