"""Reading Occ3D-layout ground truth and prediction files (with errors that name the file)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._classes import FREE_LABEL

OCC3D_SHAPE = (200, 200, 16)


class PredictionFileError(ValueError):
    """A prediction file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Occ3DScene:
    """One scene of an Occ3D-layout folder: keyframe tokens in time order and their poses.

    Attributes:
        name: scene name (folder under ``gts/``).
        tokens: sample tokens in time order.
        ego_to_global: ``[N, 4, 4]`` float64 ego-to-global poses, same order.
    """

    name: str
    tokens: tuple[str, ...]
    ego_to_global: torch.Tensor


def quaternion_to_matrix(q) -> np.ndarray:
    """``[3, 3]`` rotation matrix of a unit quaternion given as (w, x, y, z) (nuScenes order)."""
    w, x, y, z = (float(v) for v in q)
    n = (w * w + x * x + y * y + z * z) ** 0.5
    if n == 0:
        raise ValueError("quaternion must be non-zero")
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def read_occ3d_scenes(gt_root: str | Path, split: str = "all") -> list[Occ3DScene]:
    """Scenes of ``<gt_root>/annotations.json`` (Occ3D layout), keyframes sorted by timestamp.

    Args:
        gt_root: folder holding ``annotations.json`` and ``gts/<scene>/<token>/labels.npz``.
        split: "all" (every scene in ``scene_infos``), "train" or "val" (the scenes listed in
            ``train_split`` / ``val_split``).

    Returns:
        The scenes, in the order of ``scene_infos``.
    """
    root = Path(gt_root)
    path = root / "annotations.json"
    if not path.is_file():
        raise ValueError(f"ground-truth folder {root} has no annotations.json (Occ3D layout expected)")
    try:
        meta = json.loads(path.read_text())
        infos = meta["scene_infos"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not an Occ3D annotations file ({err})") from None
    if split not in ("all", "train", "val"):
        raise ValueError(f"split must be 'all', 'train' or 'val', got {split!r}")
    names = list(infos) if split == "all" else list(meta.get(f"{split}_split", []))
    scenes = []
    for name in names:
        if name not in infos:
            raise ValueError(f"{path}: scene {name!r} of {split}_split has no scene_infos entry")
        frames = sorted(infos[name].items(), key=lambda kv: float(kv[1]["timestamp"]))
        poses = []
        for token, info in frames:
            pose = np.eye(4)
            try:
                pose[:3, :3] = quaternion_to_matrix(info["ego_pose"]["rotation"])
                pose[:3, 3] = np.asarray(info["ego_pose"]["translation"], dtype=np.float64)
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}: bad ego_pose of sample {token} in scene {name} ({err})") from None
            poses.append(pose)
        if frames:
            scenes.append(Occ3DScene(name, tuple(t for t, _ in frames), torch.from_numpy(np.stack(poses))))
    return scenes


def _load_npz(path: Path, error=ValueError) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise error(f"{path}: cannot read as .npz ({err})") from None


def read_gt_sample(gt_root: str | Path, scene: str, token: str) -> dict[str, torch.Tensor | None]:
    """Load ``<gt_root>/gts/<scene>/<token>/labels.npz``.

    Returns:
        ``{"semantics": [200, 200, 16] uint8, "mask_camera": bool, "mask_lidar": bool,
        "flow": [200, 200, 16, 2] float32 m/s or None}`` (masks all True when absent).
    """
    path = Path(gt_root) / "gts" / scene / token / "labels.npz"
    data = _load_npz(path)
    if "semantics" not in data:
        raise ValueError(f"{path}: no 'semantics' array")
    sem = data["semantics"]
    if sem.shape != OCC3D_SHAPE or sem.dtype != np.uint8:
        raise ValueError(f"{path}: semantics must be uint8 {list(OCC3D_SHAPE)}, "
                         f"got {sem.dtype} {list(sem.shape)}")
    out: dict[str, torch.Tensor | None] = {"semantics": torch.from_numpy(sem.copy())}
    for key in ("mask_camera", "mask_lidar"):
        m = data.get(key)
        out[key] = (torch.ones(OCC3D_SHAPE, dtype=torch.bool) if m is None
                    else torch.from_numpy(m.astype(bool)))
    flow = data.get("flow")
    if flow is not None and flow.shape != (*OCC3D_SHAPE, 2):
        raise ValueError(f"{path}: flow must be [200, 200, 16, 2], got {list(flow.shape)}")
    out["flow"] = None if flow is None else torch.from_numpy(flow.astype(np.float32))
    return out


def prediction_path(pred_root: str | Path, token: str) -> Path:
    """``<pred_root>/<token>.npz``."""
    return Path(pred_root) / f"{token}.npz"


def read_prediction(pred_root: str | Path, token: str) -> dict[str, torch.Tensor | None]:
    """Load and check ``<pred_root>/<token>.npz``.

    Layout: ``semantics`` uint8 ``[200, 200, 16]`` Occ3D labels 0..17 (17 = free), and optionally
    ``flow`` float32 ``[200, 200, 16, 2]`` horizontal (dx, dy) flow in m/s in the ego frame.

    Raises:
        PredictionFileError: (a ValueError) naming the file, when it is missing, unreadable, lacks
            ``semantics``, or has a wrong shape, dtype or label range, or a non-finite flow.
    """
    path = prediction_path(pred_root, token)
    data = _load_npz(path, PredictionFileError)
    if "semantics" not in data:
        raise PredictionFileError(f"{path}: no 'semantics' array (found {sorted(data)})")
    sem = data["semantics"]
    if sem.dtype != np.uint8:
        raise PredictionFileError(f"{path}: semantics must be uint8, got {sem.dtype}")
    if sem.shape != OCC3D_SHAPE:
        raise PredictionFileError(f"{path}: semantics must have shape {list(OCC3D_SHAPE)}, "
                                  f"got {list(sem.shape)}")
    if int(sem.max()) > FREE_LABEL:
        raise PredictionFileError(f"{path}: semantics labels must lie in [0, {FREE_LABEL}], "
                                  f"found {int(sem.max())}")
    out: dict[str, torch.Tensor | None] = {"semantics": torch.from_numpy(sem.copy()), "flow": None}
    if "flow" in data:
        flow = data["flow"]
        if flow.dtype != np.float32:
            raise PredictionFileError(f"{path}: flow must be float32, got {flow.dtype}")
        if flow.shape != (*OCC3D_SHAPE, 2):
            raise PredictionFileError(f"{path}: flow must have shape [200, 200, 16, 2], "
                                      f"got {list(flow.shape)}")
        if not np.isfinite(flow).all():
            raise PredictionFileError(f"{path}: flow must be finite")
        out["flow"] = torch.from_numpy(flow.copy())
    return out
