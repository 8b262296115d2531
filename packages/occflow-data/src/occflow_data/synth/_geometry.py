"""Small geometry helpers: boxes, poses, quaternions, triangle soups (numpy, float64)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._geometry import rigid_inverse


@dataclass(frozen=True)
class Boxes:
    """Oriented boxes (yaw about z only).

    Attributes:
        center: [N, 3] box centres, metres.
        half: [N, 3] half extents along the box's own x (length), y (width), z (height), metres.
        yaw: [N] rotation about +z, radians.
        fine: [N] fine material class (``_classes``), uint8.
    """

    center: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    fine: np.ndarray

    @staticmethod
    def empty() -> Boxes:
        return Boxes(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.uint8))

    @staticmethod
    def concat(items: list[Boxes]) -> Boxes:
        items = [b for b in items if len(b)]
        if not items:
            return Boxes.empty()
        return Boxes(
            np.concatenate([b.center for b in items]),
            np.concatenate([b.half for b in items]),
            np.concatenate([b.yaw for b in items]),
            np.concatenate([b.fine for b in items]),
        )

    def __len__(self) -> int:
        return len(self.yaw)


class BoxList:
    """Accumulates boxes one by one (used while building the world)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, center, size, yaw: float, fine: int) -> None:
        """Add a box of full ``size`` (length, width, height) centred at ``center``."""
        self.rows.append(
            (tuple(float(c) for c in center), tuple(float(s) / 2 for s in size), float(yaw), int(fine))
        )

    def add_on(self, x: float, y: float, z0: float, size, yaw: float, fine: int) -> None:
        """Add a box standing on height ``z0`` at (x, y)."""
        self.add((x, y, z0 + size[2] / 2), size, yaw, fine)

    def build(self) -> Boxes:
        if not self.rows:
            return Boxes.empty()
        c, h, y, f = zip(*self.rows, strict=True)
        return Boxes(
            np.array(c, np.float64), np.array(h, np.float64), np.array(y, np.float64), np.array(f, np.uint8)
        )


_CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
# Faces of the box corners above (index = 4*(sx>0) + 2*(sy>0) + (sz>0)), outward winding.
_BOX_TRIS = np.array(
    [
        [0, 1, 3],
        [0, 3, 2],  # -x
        [4, 6, 7],
        [4, 7, 5],  # +x
        [0, 4, 5],
        [0, 5, 1],  # -y
        [2, 3, 7],
        [2, 7, 6],  # +y
        [0, 2, 6],
        [0, 6, 4],  # -z
        [1, 5, 7],
        [1, 7, 3],  # +z
    ],
    np.int64,
)


def box_corners(boxes: Boxes) -> np.ndarray:
    """Corners of each box: [N, 8, 3]."""
    local = _CORNER_SIGNS[None] * boxes.half[:, None, :]
    c, s = np.cos(boxes.yaw)[:, None], np.sin(boxes.yaw)[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], -1) + boxes.center[:, None, :]


def box_triangles(boxes: Boxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangle soup of boxes: vertices [8N, 3], indices [12N, 3], owning box [12N]."""
    n = len(boxes)
    verts = box_corners(boxes).reshape(-1, 3)
    tris = (_BOX_TRIS[None] + 8 * np.arange(n)[:, None, None]).reshape(-1, 3)
    owner = np.repeat(np.arange(n), 12)
    return verts, tris, owner


def transform_boxes(boxes: Boxes, x: float, y: float, z: float, yaw: float) -> Boxes:
    """Move boxes given in an object frame into the frame where the object sits at (x, y, z, yaw)."""
    c, s = np.cos(yaw), np.sin(yaw)
    cx = c * boxes.center[:, 0] - s * boxes.center[:, 1] + x
    cy = s * boxes.center[:, 0] + c * boxes.center[:, 1] + y
    return Boxes(np.stack([cx, cy, boxes.center[:, 2] + z], 1), boxes.half, boxes.yaw + yaw, boxes.fine)


def pose_matrix(x, y, z, yaw) -> np.ndarray:
    """4x4 poses from position and yaw; broadcasts over leading dims -> [..., 4, 4]."""
    x, y, z, yaw = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (x, y, z, yaw)))
    out = np.zeros(x.shape + (4, 4))
    c, s = np.cos(yaw), np.sin(yaw)
    out[..., 0, 0], out[..., 0, 1], out[..., 1, 0], out[..., 1, 1] = c, -s, s, c
    out[..., 2, 2] = out[..., 3, 3] = 1.0
    out[..., 0, 3], out[..., 1, 3], out[..., 2, 3] = x, y, z
    return out


def rot_to_quat(r: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> unit quaternion (w, x, y, z) with w >= 0."""
    r = np.asarray(r, np.float64)
    tr = np.trace(r)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def yaw_quat(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by ``yaw`` about +z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def camera_rotation(yaw: float, pitch: float = 0.0) -> np.ndarray:
    """Camera-to-body rotation of an OpenCV camera (x right, y down, z forward) looking along ``yaw``.

    ``pitch`` > 0 tilts the optical axis down, radians.
    """
    fwd = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), -np.sin(pitch)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd], 1)


#: Inverse of rigid 4x4 transforms [..., 4, 4] (shared with the readers).
invert_pose = rigid_inverse


def apply(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points [..., 3]."""
    return p @ t[:3, :3].T + t[:3, 3]
