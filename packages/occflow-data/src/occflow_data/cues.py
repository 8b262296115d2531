"""The on-disk cache of 2-D training cues (layout owned by the ``pseudolabels`` package).

``pseudolabels`` writes the cache and the readers of this package load it; neither imports the
other, so the layout, the atomic save, the loader and the validity check live here.

Layout::

    <cache>/manifest.json              {"format": 1, "dataset": str,
                                        "cues": {cue: {"estimator", "settings", "versions"}}}
    <cache>/<cue>/<sample_key>.npz     one file per sample and cue

A sample key is the nuScenes sample token, or ``"<seq>_<frame:06d>"`` for KITTI
(:func:`kitti_sample_key`). Arrays are stacked over the cameras in the dataset's camera order,
at the ORIGINAL image resolution (readers resize or crop them like the images and scale flow
vectors by the same factors, see :func:`resize_cues`):

=========== =========== ============ =========================================================
cue         array       dtype        shape and meaning
=========== =========== ============ =========================================================
flow        flow        float16      [N, 2, H, W] pixels (dx, dy), image t -> next keyframe
flow        valid       bool         [N, H, W] forward-backward consistent and inside the image
track       flow, valid as ``flow``  tracking flow to the next keyframe chained through sweeps
mask        mask        bool         [N, H, W] movable (moving) object pixels
depth       depth       float16      [N, H, W] LiDAR z-depth along the optical axis, metres,
                                     0 = no return
disparity   disparity   float32      [N, H, W] KITTI evaluation disparity fx * b / depth, px,
                                     0 = none
=========== =========== ============ =========================================================

Files are written atomically: the arrays go to a hidden temporary file in the same folder
(``.<key>.<random>.tmp``, never matching ``*.npz``), which is flushed, fsync'ed and moved into
place with :func:`os.replace`. A killed writer can leave only temporary files, which
:func:`remove_temporary_files` deletes; a file named ``*.npz`` is therefore either complete or
damaged by something outside the writer, which :func:`check_cue_file` detects.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CUE_SPECS",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ArraySpec",
    "CueFileError",
    "check_cue_file",
    "cue_path",
    "frame_cues",
    "kitti_sample_key",
    "list_cue_files",
    "load_cue",
    "read_manifest",
    "remove_temporary_files",
    "resize_cues",
    "save_cue",
    "update_manifest",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class ArraySpec:
    """One array of a cue file.

    Attributes:
        name: key inside the ``.npz`` file.
        dtype: numpy dtype name it is stored with.
        shape: symbolic shape, e.g. ``("N", 2, "H", "W")``; symbols must agree across the arrays
            of one file, integers are exact.
        finite: whether every value must be finite (floating arrays).
        nonnegative: whether every value must be >= 0.
    """

    name: str
    dtype: str
    shape: tuple[str | int, ...]
    finite: bool = False
    nonnegative: bool = False


_FLOW_ARRAYS = (
    ArraySpec("flow", "float16", ("N", 2, "H", "W"), finite=True),
    ArraySpec("valid", "bool", ("N", "H", "W")),
)

CUE_SPECS: dict[str, tuple[ArraySpec, ...]] = {
    "flow": _FLOW_ARRAYS,
    "track": _FLOW_ARRAYS,
    "mask": (ArraySpec("mask", "bool", ("N", "H", "W")),),
    "depth": (ArraySpec("depth", "float16", ("N", "H", "W"), finite=True, nonnegative=True),),
    "disparity": (ArraySpec("disparity", "float32", ("N", "H", "W"), finite=True, nonnegative=True),),
}
"""The arrays of each cue (see the module docstring)."""


class CueFileError(ValueError):
    """A cue file that is missing, truncated, or does not follow the layout."""


def _check_cue_name(cue: str) -> None:
    if not isinstance(cue, str):
        raise TypeError(f"cue: expected a str, got {type(cue).__name__}")
    if cue not in CUE_SPECS:
        raise ValueError(f"cue: expected one of {sorted(CUE_SPECS)}, got {cue!r}")


def _check_key(sample_key: str) -> None:
    if not isinstance(sample_key, str):
        raise TypeError(f"sample_key: expected a str, got {type(sample_key).__name__}")
    if not sample_key or "/" in sample_key or "\\" in sample_key or sample_key.startswith("."):
        raise ValueError(
            f"sample_key: expected a non-empty file name without '/' or leading '.', got {sample_key!r}"
        )


def kitti_sample_key(sequence: str | int, frame: int) -> str:
    """The sample key of a KITTI frame: ``"<seq>_<frame:06d>"``.

    Args:
        sequence: sequence name as in the folder (``"08"`` for odometry, ``"0003"`` for tracking);
            an int is written with two digits.
        frame: frame index >= 0.
    """
    if isinstance(sequence, bool) or not isinstance(sequence, (str, int)):
        raise TypeError(f"sequence: expected a str or int, got {type(sequence).__name__}")
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 0:
        raise ValueError(f"frame: expected an int >= 0, got {frame!r}")
    seq = f"{sequence:02d}" if isinstance(sequence, int) else sequence
    return f"{seq}_{int(frame):06d}"


def cue_path(cache: str | os.PathLike, cue: str, sample_key: str) -> Path:
    """Path of one cue file: ``<cache>/<cue>/<sample_key>.npz``."""
    _check_cue_name(cue)
    _check_key(sample_key)
    return Path(cache) / cue / f"{sample_key}.npz"


def _validate_arrays(cue: str, arrays: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """Check names, dtypes, shapes and values of a cue's arrays; return them as numpy arrays."""
    specs = CUE_SPECS[cue]
    expected = {s.name for s in specs}
    if set(arrays) != expected:
        raise CueFileError(f"{where}: cue {cue!r} needs arrays {sorted(expected)}, got {sorted(arrays)}")
    out: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for spec in specs:
        a = arrays[spec.name]
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        if not isinstance(a, np.ndarray):
            raise CueFileError(
                f"{where}: array {spec.name!r} must be a numpy array or tensor, got {type(a).__name__}"
            )
        if a.dtype != np.dtype(spec.dtype):
            raise CueFileError(f"{where}: array {spec.name!r} must have dtype {spec.dtype}, got {a.dtype}")
        if a.ndim != len(spec.shape):
            raise CueFileError(
                f"{where}: array {spec.name!r} must have shape {list(spec.shape)}, got {list(a.shape)}"
            )
        for dim, (sym, size) in enumerate(zip(spec.shape, a.shape, strict=True)):
            if isinstance(sym, int):
                if size != sym:
                    raise CueFileError(
                        f"{where}: array {spec.name!r} dim {dim} must be {sym}, got shape {list(a.shape)}"
                    )
            elif sizes.setdefault(sym, size) != size:
                raise CueFileError(
                    f"{where}: array {spec.name!r} has {sym}={size}, other arrays have {sym}={sizes[sym]}"
                )
            if size == 0:
                raise CueFileError(f"{where}: array {spec.name!r} is empty (shape {list(a.shape)})")
        if spec.finite and not np.isfinite(a).all():
            raise CueFileError(f"{where}: array {spec.name!r} has non-finite values")
        if spec.nonnegative and (a < 0).any():
            raise CueFileError(f"{where}: array {spec.name!r} has negative values")
        out[spec.name] = a
    return out


def save_cue(cache: str | os.PathLike, cue: str, sample_key: str, arrays: Mapping[str, Any]) -> Path:
    """Write one cue file atomically (temporary file, fsync, :func:`os.replace`).

    Args:
        cache: cache root folder (created when missing).
        cue: one of :data:`CUE_SPECS`.
        sample_key: nuScenes sample token or :func:`kitti_sample_key`.
        arrays: the cue's arrays with the exact dtypes of :data:`CUE_SPECS` (numpy arrays or CPU
            tensors), e.g. for ``"flow"``: ``flow`` float16 [N, 2, H, W] px and ``valid`` bool
            [N, H, W].

    Returns:
        The final path.

    Raises:
        CueFileError: (a ``ValueError``) when the arrays do not follow the layout; nothing is
            written then.
    """
    path = cue_path(cache, cue, sample_key)
    checked = _validate_arrays(cue, arrays, f"save_cue({cue!r}, {sample_key!r})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{sample_key}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **checked)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CueFileError(f"{path}: cue file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise CueFileError(f"{path}: unreadable or truncated cue file ({type(e).__name__}: {e})") from e


def check_cue_file(
    path: str | os.PathLike,
    cue: str,
    *,
    num_cameras: int | None = None,
    image_hw: tuple[int, int] | None = None,
) -> str | None:
    """Check that a cue file is complete and follows the layout.

    Reads every array (a truncated or corrupt zip member fails its CRC check), then checks
    names, dtypes, shapes, finiteness and, when given, the camera count and image size.

    Args:
        path: the ``.npz`` file.
        cue: one of :data:`CUE_SPECS`.
        num_cameras: expected N, or None to accept any.
        image_hw: expected (H, W), or None to accept any.

    Returns:
        None when the file is valid, else a one-line reason.
    """
    _check_cue_name(cue)
    path = Path(path)
    try:
        arrays = _read_npz(path)
        checked = _validate_arrays(cue, arrays, str(path))
    except CueFileError as e:
        return str(e)
    first = checked[CUE_SPECS[cue][0].name]
    n = first.shape[0]
    hw = tuple(first.shape[-2:])
    if num_cameras is not None and n != num_cameras:
        return f"{path}: expected {num_cameras} cameras, got {n}"
    if image_hw is not None and hw != tuple(image_hw):
        return f"{path}: expected image size {tuple(image_hw)}, got {hw}"
    return None


def load_cue(cache: str | os.PathLike, cue: str, sample_key: str) -> dict[str, torch.Tensor]:
    """Load one cue file as CPU tensors (float16 arrays become float32).

    Args:
        cache: cache root folder.
        cue: one of :data:`CUE_SPECS`.
        sample_key: nuScenes sample token or :func:`kitti_sample_key`.

    Returns:
        The arrays of :data:`CUE_SPECS` by name, e.g. ``{"flow": [N, 2, H, W] float32 px,
        "valid": [N, H, W] bool}``.

    Raises:
        CueFileError: (a ``ValueError``) naming the file when it is missing, truncated or does
            not follow the layout.
    """
    path = cue_path(cache, cue, sample_key)
    checked = _validate_arrays(cue, _read_npz(path), str(path))
    out = {}
    for name, a in checked.items():
        t = torch.from_numpy(np.ascontiguousarray(a))
        out[name] = t.float() if t.dtype == torch.float16 else t
    return out


def frame_cues(
    cache: str | os.PathLike,
    sample_key: str,
    *,
    flow_cue: str = "flow",
    required: bool = False,
) -> dict[str, torch.Tensor]:
    """The cues of one sample under the :class:`Frame` ``cues`` keys (original resolution).

    Args:
        cache: cache root folder.
        sample_key: nuScenes sample token or :func:`kitti_sample_key`.
        flow_cue: ``"flow"`` (direct optical flow) or ``"track"`` (tracking flow through the
            sweeps) as the source of ``"flow"``/``"flow_valid"``.
        required: raise when any of the four cues is missing instead of leaving it out.

    Returns:
        A dict with those of ``"flow"`` [N, 2, H, W] float32 px, ``"flow_valid"`` [N, H, W] bool,
        ``"movable"`` [N, H, W] bool and ``"lidar_depth"`` [N, H, W] float32 metres (0 = none)
        whose files exist. A file that exists but is damaged always raises.
    """
    if flow_cue not in ("flow", "track"):
        raise ValueError(f"flow_cue: expected 'flow' or 'track', got {flow_cue!r}")
    out: dict[str, torch.Tensor] = {}
    for cue, names in ((flow_cue, {"flow": "flow", "valid": "flow_valid"}),
                       ("mask", {"mask": "movable"}), ("depth", {"depth": "lidar_depth"})):
        if not cue_path(cache, cue, sample_key).exists():
            if required:
                raise CueFileError(f"{cue_path(cache, cue, sample_key)}: cue file not found")
            continue
        arrays = load_cue(cache, cue, sample_key)
        for src, dst in names.items():
            out[dst] = arrays[src]
    return out


def resize_cues(
    cues: Mapping[str, torch.Tensor],
    size: tuple[int, int],
    crop: tuple[int, int, int, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Crop, then resize cues the way images are, scaling flow vectors.

    Every cue is sampled by nearest neighbour, so no flow vector or depth is averaged with an
    invalid one (0 = none stays 0) and masks stay binary. Flow (dx, dy) is multiplied by
    (w / W_crop, h / H_crop) of the resize; cropping alone does not change it.

    Args:
        cues: any of ``"flow"`` [N, 2, H, W], ``"flow_valid"``, ``"movable"`` [N, H, W] bool,
            ``"lidar_depth"`` [N, H, W] (other keys are passed through unchanged).
        size: output (h, w).
        crop: (top, left, height, width) applied before resizing, or None.

    Returns:
        The same keys at (h, w).
    """
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size: expected (h, w) > 0, got {size!r}")
    h, w = int(size[0]), int(size[1])
    out: dict[str, torch.Tensor] = {}
    for key, t in cues.items():
        if key not in ("flow", "flow_valid", "movable", "lidar_depth"):
            out[key] = t
            continue
        x = t if t.dim() == 4 else t.unsqueeze(1)
        if crop is not None:
            top, left, ch, cw = crop
            if top < 0 or left < 0 or top + ch > x.shape[-2] or left + cw > x.shape[-1]:
                raise ValueError(f"crop: {crop} does not fit the cue size {tuple(x.shape[-2:])}")
            x = x[..., top : top + ch, left : left + cw]
        in_h, in_w = x.shape[-2:]
        y = torch.nn.functional.interpolate(x.float(), size=(h, w), mode="nearest-exact")
        if key == "flow":
            y = y * torch.tensor([w / in_w, h / in_h], dtype=y.dtype).view(1, 2, 1, 1)
        if t.dtype == torch.bool:
            y = y > 0.5
        out[key] = y if t.dim() == 4 else y[:, 0]
    return out


def read_manifest(cache: str | os.PathLike) -> dict[str, Any] | None:
    """Read ``<cache>/manifest.json``; None when absent.

    Raises:
        ValueError: naming the file when it is not valid JSON or not format 1.
    """
    path = Path(cache) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if (not isinstance(data, dict) or data.get("format") != FORMAT_VERSION
            or not isinstance(data.get("cues"), dict)):
        raise ValueError(f"{path}: expected a manifest with format {FORMAT_VERSION} and a 'cues' object")
    return data


def update_manifest(
    cache: str | os.PathLike,
    dataset: str,
    cue: str,
    *,
    estimator: str,
    settings: Mapping[str, Any],
    versions: Mapping[str, str],
) -> dict[str, Any]:
    """Record how a cue was made in ``<cache>/manifest.json`` (atomic rewrite).

    Args:
        cache: cache root folder (created when missing).
        dataset: dataset name, e.g. ``"nuscenes"``; must match an existing manifest.
        cue: one of :data:`CUE_SPECS`.
        estimator: name of the method, e.g. ``"opencv-dis"``.
        settings: JSON-serialisable settings of the method.
        versions: package versions, e.g. ``{"pseudolabels": "0.1.0", "opencv": "4.11.0"}``.

    Returns:
        The manifest written.

    Raises:
        ValueError: when the cache belongs to another dataset, or the cue already exists with
            different estimator or settings (delete the cue folder to remake it).
    """
    _check_cue_name(cue)
    entry = {"estimator": str(estimator), "settings": json.loads(json.dumps(dict(settings))),
             "versions": {str(k): str(v) for k, v in versions.items()}}
    data = read_manifest(cache) or {"format": FORMAT_VERSION, "dataset": dataset, "cues": {}}
    where = Path(cache) / MANIFEST_NAME
    if data.get("dataset") != dataset:
        raise ValueError(f"{where}: cache holds dataset {data.get('dataset')!r}, not {dataset!r}")
    old = data["cues"].get(cue)
    made_by = (entry["estimator"], entry["settings"])
    if old is not None and (old.get("estimator"), old.get("settings")) != made_by:
        raise ValueError(
            f"{Path(cache) / MANIFEST_NAME}: cue {cue!r} was made by {old.get('estimator')!r} with "
            f"{old.get('settings')}; refusing to mix it with {entry['estimator']!r} {entry['settings']} "
            f"(delete {Path(cache) / cue} to remake it)"
        )
    data["cues"][cue] = entry
    root = Path(cache)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{MANIFEST_NAME}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, root / MANIFEST_NAME)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return data


def list_cue_files(cache: str | os.PathLike, cue: str) -> list[Path]:
    """The ``*.npz`` files of one cue, sorted (temporary files are never listed)."""
    _check_cue_name(cue)
    folder = Path(cache) / cue
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


def remove_temporary_files(cache: str | os.PathLike) -> list[Path]:
    """Delete temporary files left by killed writers; return the paths removed.

    Only call this while no writer is running on the cache.
    """
    root = Path(cache)
    removed = []
    if not root.is_dir():
        return removed
    for tmp in sorted(root.glob(f"**/.*{_TMP_SUFFIX}")):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
