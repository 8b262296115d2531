"""The Let Occ Flow model, self-supervised losses and two-stage accelerate training, evaluation and
prediction.
"""

from ._eval_utils import flow_to_velocity, occupancy_from_sdf, vertices_to_cells
from ._field import SceneField

__version__ = "0.1.0"

__all__ = [
    "SceneField",
    "__version__",
    "flow_to_velocity",
    "occupancy_from_sdf",
    "vertices_to_cells",
]
