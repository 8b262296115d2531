"""Small numpy geometry helpers shared by the readers and the synthetic world (private)."""

from __future__ import annotations

import numpy as np


def rigid_inverse(t: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms ``[..., 4, 4]`` (rotation transposed, translation rotated back).

    Exact for rigid transforms and cheaper than ``np.linalg.inv``; the dtype of ``t`` is kept.
    """
    out = np.zeros_like(t)
    r = np.swapaxes(t[..., :3, :3], -1, -2)
    out[..., :3, :3] = r
    out[..., :3, 3] = -(r @ t[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out
