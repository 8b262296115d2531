"""The sample schema shared by every package: frames, samples, ground truth and batches.

Conventions (DESIGN.md): ego frame x forward, y left, z up, metres; cameras in the OpenCV
convention (x right, y down, z forward); 3x3 pinhole intrinsics in pixels of the image they
belong to; poses 4x4, ``ego_to_global`` float64 on the CPU side.

Every dataclass validates its fields in ``__post_init__`` and raises a ``ValueError`` (a
``TypeError`` for a wrong type) that names the field and the expected shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from volrender import GridSpec

#: Number of Occ3D semantic labels including "free" (labels 0..17).
NUM_OCC_LABELS = 18
#: The Occ3D label of an empty voxel.
FREE_LABEL = 17

#: Known cue names: (trailing shape after [N], suffix "hw" means [N, h, w], dtype kind).
_CUE_SPECS: dict[str, tuple[str, str]] = {
    "flow": ("[N, 2, h, w]", "float"),
    "flow_valid": ("[N, h, w]", "bool"),
    "movable": ("[N, h, w]", "bool"),
    "lidar_depth": ("[N, h, w]", "float"),
}


# --------------------------------------------------------------------------- helpers
def _tensor(owner: str, name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{owner}.{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _shape_error(owner: str, name: str, expected: str, value: torch.Tensor) -> ValueError:
    return ValueError(f"{owner}.{name} must have shape {expected}, got {tuple(value.shape)}")


def _check_float(owner: str, name: str, value: torch.Tensor, *, finite: bool = True) -> None:
    if not value.is_floating_point():
        raise ValueError(f"{owner}.{name} must be a floating-point tensor, got {value.dtype}")
    if finite and value.numel() and not _all_finite(value):
        raise ValueError(f"{owner}.{name} must contain only finite values")


def _all_finite(value: torch.Tensor) -> bool:
    # numpy on CPU tensors: single-threaded, so cheap even on a busy machine
    if value.device.type == "cpu" and value.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(value.detach().numpy()).all())
    return bool(torch.isfinite(value).all())


def _check_bool(owner: str, name: str, value: torch.Tensor) -> None:
    if value.dtype != torch.bool:
        raise ValueError(f"{owner}.{name} must be a bool tensor, got {value.dtype}")


def _check_rigid(owner: str, name: str, value: torch.Tensor) -> None:
    """Last two dims a homogeneous rigid transform (bottom row 0 0 0 1, rotation orthonormal)."""
    flat = value.reshape(-1, 4, 4).double()
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=flat.device)
    if not torch.allclose(flat[:, 3], bottom.expand_as(flat[:, 3]), atol=1e-5):
        raise ValueError(f"{owner}.{name} must be homogeneous transforms with last row [0, 0, 0, 1]")
    rot = flat[:, :3, :3]
    eye = torch.eye(3, dtype=torch.float64, device=flat.device)
    if not torch.allclose(rot @ rot.transpose(-1, -2), eye.expand_as(rot), atol=1e-3):
        raise ValueError(f"{owner}.{name} must have an orthonormal rotation block (rigid transform)")


def _check_intrinsics(owner: str, name: str, value: torch.Tensor, n: int) -> None:
    if value.shape != (n, 3, 3):
        raise _shape_error(owner, name, f"[N={n}, 3, 3]", value)
    _check_float(owner, name, value)
    if not bool((value[:, 0, 0] > 0).all() and (value[:, 1, 1] > 0).all()):
        raise ValueError(f"{owner}.{name} must have positive focal lengths fx, fy")


def _check_images(owner: str, name: str, value: torch.Tensor, n: int | None) -> None:
    if value.ndim != 4 or value.shape[1] != 3 or (n is not None and value.shape[0] != n):
        raise _shape_error(owner, name, f"[N{'' if n is None else '=' + str(n)}, 3, H, W]", value)
    if value.dtype != torch.float32:
        raise ValueError(f"{owner}.{name} must be float32, got {value.dtype}")
    if value.numel():
        if value.device.type == "cpu":
            array = value.detach().numpy()
            lo, hi = float(array.min()), float(array.max())
        else:
            lo, hi = (float(v) for v in torch.aminmax(value))
        if not (lo >= 0.0 and hi <= 1.0):  # also False for NaN
            raise ValueError(f"{owner}.{name} values must lie in [0, 1], got [{lo}, {hi}]")


def _move(value: Any, device: torch.device | str, non_blocking: bool) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, dict):
        return {k: _move(v, device, non_blocking) for k, v in value.items()}
    if isinstance(value, list):
        return [_move(v, device, non_blocking) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "to"):
        return value.to(device, non_blocking=non_blocking)
    return value


def _pin(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.pin_memory()
    if isinstance(value, dict):
        return {k: _pin(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pin(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "pin_memory"):
        return value.pin_memory()
    return value


def _rebuild(obj: Any, fn) -> Any:
    """Copy of a schema dataclass with ``fn`` applied to every field, without re-validation.

    The fields of a valid object stay valid under a device move or pinning, and re-checking
    them on a GPU would force a synchronisation per check.
    """
    new = object.__new__(type(obj))
    for f in dataclasses.fields(obj):
        object.__setattr__(new, f.name, fn(getattr(obj, f.name)))
    return new


# --------------------------------------------------------------------------- Frame
@dataclass
class Frame:
    """One time step of a multi-camera rig, as the model and the losses see it.

    Args:
        images: ``[N, 3, H, W]`` float32 RGB in [0, 1] at the model input resolution.
        intrinsics: ``[N, 3, 3]`` pinhole intrinsics of ``images``, pixels.
        cam_to_ego: ``[N, 4, 4]`` camera (OpenCV: x right, y down, z forward) to ego transforms.
        ego_to_global: ``[4, 4]`` float64 ego-to-world pose (x forward, y left, z up), metres.
        timestamp: seconds (any fixed origin per dataset).
        lidar: ``[P, 3]`` float32 LiDAR points in this frame's ego frame, metres, or None.
        loss_images: ``[N, 3, h, w]`` float32 in [0, 1] at the (smaller) loss resolution, or None.
            Never photometrically augmented.
        loss_intrinsics: ``[N, 3, 3]`` intrinsics of ``loss_images``; required with them.
        cues: cached 2-D cues at the loss resolution, keyed by name: ``"flow"`` ``[N, 2, h, w]``
            float pixels (to the next keyframe, loss-resolution pixels), ``"flow_valid"``
            ``[N, h, w]`` bool, ``"movable"`` ``[N, h, w]`` bool, ``"lidar_depth"`` ``[N, h, w]``
            float metres (0 = none). Other names are allowed if their first dim is N.
    """

    images: torch.Tensor
    intrinsics: torch.Tensor
    cam_to_ego: torch.Tensor
    ego_to_global: torch.Tensor
    timestamp: float
    lidar: torch.Tensor | None = None
    loss_images: torch.Tensor | None = None
    loss_intrinsics: torch.Tensor | None = None
    cues: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        o = "Frame"
        images = _tensor(o, "images", self.images)
        _check_images(o, "images", images, None)
        n = images.shape[0]
        if n < 1:
            raise _shape_error(o, "images", "[N >= 1, 3, H, W]", images)
        _check_intrinsics(o, "intrinsics", _tensor(o, "intrinsics", self.intrinsics), n)
        cam = _tensor(o, "cam_to_ego", self.cam_to_ego)
        if cam.shape != (n, 4, 4):
            raise _shape_error(o, "cam_to_ego", f"[N={n}, 4, 4]", cam)
        _check_float(o, "cam_to_ego", cam)
        _check_rigid(o, "cam_to_ego", cam)
        pose = _tensor(o, "ego_to_global", self.ego_to_global)
        if pose.shape != (4, 4):
            raise _shape_error(o, "ego_to_global", "[4, 4]", pose)
        if pose.dtype != torch.float64:
            raise ValueError(f"Frame.ego_to_global must be float64, got {pose.dtype}")
        _check_float(o, "ego_to_global", pose)
        _check_rigid(o, "ego_to_global", pose)
        if isinstance(self.timestamp, bool) or not isinstance(self.timestamp, (int, float)):
            raise TypeError(f"Frame.timestamp must be a float (seconds), got {type(self.timestamp).__name__}")
        if not math.isfinite(self.timestamp):
            raise ValueError(f"Frame.timestamp must be finite, got {self.timestamp}")
        self.timestamp = float(self.timestamp)
        if self.lidar is not None:
            lidar = _tensor(o, "lidar", self.lidar)
            if lidar.ndim != 2 or lidar.shape[1] != 3:
                raise _shape_error(o, "lidar", "[P, 3]", lidar)
            _check_float(o, "lidar", lidar)
        if (self.loss_images is None) != (self.loss_intrinsics is None):
            raise ValueError("Frame.loss_images and Frame.loss_intrinsics must be given together")
        loss_hw = None
        if self.loss_images is not None:
            _check_images(o, "loss_images", _tensor(o, "loss_images", self.loss_images), n)
            _check_intrinsics(o, "loss_intrinsics", _tensor(o, "loss_intrinsics", self.loss_intrinsics), n)
            loss_hw = tuple(self.loss_images.shape[-2:])
        if not isinstance(self.cues, dict):
            raise TypeError(f"Frame.cues must be a dict[str, Tensor], got {type(self.cues).__name__}")
        for key, value in self.cues.items():
            loss_hw = _check_cue(key, value, n, loss_hw)

    # ---------------------------------------------------------------- helpers
    @property
    def num_cameras(self) -> int:
        """N, the number of cameras."""
        return self.images.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the model input images."""
        return tuple(self.images.shape[-2:])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Frame:
        """Copy with every tensor on ``device`` (dtypes kept; ``ego_to_global`` stays float64)."""
        return _rebuild(self, lambda v: _move(v, device, non_blocking))

    def pin_memory(self) -> Frame:
        """Copy with every tensor in pinned memory (called by ``DataLoader(pin_memory=True)``)."""
        return _rebuild(self, _pin)


def _check_cue(key: Any, value: Any, n: int, loss_hw: tuple | None) -> tuple:
    if not isinstance(key, str):
        raise TypeError(f"Frame.cues keys must be str, got {type(key).__name__}")
    name = f"cues[{key!r}]"
    value = _tensor("Frame", name, value)
    spec = _CUE_SPECS.get(key)
    if spec is None:
        if value.ndim < 1 or value.shape[0] != n:
            raise _shape_error("Frame", name, f"[N={n}, ...]", value)
        return loss_hw
    expected, kind = spec
    ok = value.ndim == 4 and value.shape[1] == 2 if key == "flow" else value.ndim == 3
    if not ok or value.shape[0] != n:
        raise _shape_error("Frame", name, expected.replace("N", f"N={n}"), value)
    hw = tuple(value.shape[-2:])
    if loss_hw is not None and hw != loss_hw:
        raise ValueError(f"Frame.{name} must be at the loss resolution (h, w) = {loss_hw}, got {hw}")
    if kind == "bool":
        _check_bool("Frame", name, value)
    else:
        _check_float("Frame", name, value, finite=key != "flow")
    return hw


# --------------------------------------------------------------------------- ground truth
@dataclass
class GroundTruth:
    """Evaluation ground truth of one sample (Occ3D / OpenOcc style), never used for training.

    Args:
        occupancy: ``[X, Y, Z]`` uint8 semantic labels 0..17, 17 = free (Occ3D classes).
        mask_camera: ``[X, Y, Z]`` bool, voxels observed by the cameras.
        mask_lidar: ``[X, Y, Z]`` bool, voxels observed by the LiDAR.
        grid: the voxel grid; ``grid.cells == (X, Y, Z)``.
        flow: ``[X, Y, Z, 2]`` float32 horizontal (dx, dy) velocity in the ego frame, m/s
            (OpenOcc; zero on static voxels), or None when the ground truth has no flow.
    """

    occupancy: torch.Tensor
    mask_camera: torch.Tensor
    mask_lidar: torch.Tensor
    grid: GridSpec
    flow: torch.Tensor | None = None

    def __post_init__(self) -> None:
        o = "GroundTruth"
        occ = _tensor(o, "occupancy", self.occupancy)
        if occ.ndim != 3:
            raise _shape_error(o, "occupancy", "[X, Y, Z]", occ)
        if occ.dtype != torch.uint8:
            raise ValueError(f"GroundTruth.occupancy must be uint8 labels, got {occ.dtype}")
        if occ.numel() and int(occ.max()) >= NUM_OCC_LABELS:
            raise ValueError(f"GroundTruth.occupancy labels must lie in 0..{NUM_OCC_LABELS - 1}, "
                             f"got max {int(occ.max())}")
        shape = tuple(occ.shape)
        for name in ("mask_camera", "mask_lidar"):
            mask = _tensor(o, name, getattr(self, name))
            if tuple(mask.shape) != shape:
                raise _shape_error(o, name, f"[X, Y, Z] = {list(shape)}", mask)
            _check_bool(o, name, mask)
        if not isinstance(self.grid, GridSpec):
            raise TypeError(f"GroundTruth.grid must be a volrender.GridSpec, got {type(self.grid).__name__}")
        if tuple(self.grid.cells) != shape:
            raise ValueError(f"GroundTruth.grid.cells must equal the occupancy shape {shape}, "
                             f"got {self.grid.cells}")
        if self.flow is not None:
            flow = _tensor(o, "flow", self.flow)
            if tuple(flow.shape) != (*shape, 2):
                raise _shape_error(o, "flow", f"[X, Y, Z, 2] = {[*shape, 2]}", flow)
            _check_float(o, "flow", flow)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> GroundTruth:
        """Copy with every tensor on ``device``."""
        return _rebuild(self, lambda v: _move(v, device, non_blocking))

    def pin_memory(self) -> GroundTruth:
        """Copy with every tensor in pinned memory."""
        return _rebuild(self, _pin)


# --------------------------------------------------------------------------- Sample
@dataclass
class Sample:
    """One training or evaluation example.

    Args:
        current: the frame at time t (model input).
        history: earlier frames t-k..t-1, oldest first (model input); may be empty.
        next: the next keyframe t+1 (supervision only), or None.
        aux_prev: an auxiliary earlier frame drawn by ego distance (supervision only), or None.
        gt: evaluation ground truth, or None.
        meta: free-form identifiers, at least ``dataset``, ``scene``, ``token``, ``index``.

    Every frame must have the same cameras (N) as ``current``; history frames also the same
    input and loss resolutions (they are stacked with it).
    """

    current: Frame
    history: list[Frame] = field(default_factory=list)
    next: Frame | None = None
    aux_prev: Frame | None = None
    gt: GroundTruth | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.current, Frame):
            raise TypeError(f"Sample.current must be a Frame, got {type(self.current).__name__}")
        if not isinstance(self.history, (list, tuple)):
            raise TypeError(f"Sample.history must be a list of Frame, got {type(self.history).__name__}")
        self.history = list(self.history)
        n = self.current.num_cameras
        named = [(f"history[{i}]", f) for i, f in enumerate(self.history)]
        named += [("next", self.next), ("aux_prev", self.aux_prev)]
        for name, frame in named:
            if frame is None and not name.startswith("history"):
                continue
            if not isinstance(frame, Frame):
                raise TypeError(f"Sample.{name} must be a Frame, got {type(frame).__name__}")
            if frame.num_cameras != n:
                raise ValueError(f"Sample.{name} has {frame.num_cameras} cameras, expected N={n} "
                                 "like Sample.current")
        for i, frame in enumerate(self.history):
            if frame.image_size != self.current.image_size:
                raise ValueError(f"Sample.history[{i}].images must be [N, 3, {self.current.image_size[0]}, "
                                 f"{self.current.image_size[1]}] like Sample.current, got "
                                 f"{tuple(frame.images.shape)}")
        if self.gt is not None and not isinstance(self.gt, GroundTruth):
            raise TypeError(f"Sample.gt must be a GroundTruth or None, got {type(self.gt).__name__}")
        if not isinstance(self.meta, dict):
            raise TypeError(f"Sample.meta must be a dict, got {type(self.meta).__name__}")

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Sample:
        """Copy with every tensor on ``device``."""
        return _rebuild(self, lambda v: _move(v, device, non_blocking))


# --------------------------------------------------------------------------- batches
@dataclass
class FrameBatch:
    """B frames stacked: the fields of :class:`Frame` with a leading batch dim.

    Attributes:
        images: ``[B, N, 3, H, W]`` float32 in [0, 1].
        intrinsics: ``[B, N, 3, 3]``.
        cam_to_ego: ``[B, N, 4, 4]``.
        ego_to_global: ``[B, 4, 4]`` float64.
        timestamp: ``[B]`` float64 seconds.
        lidar: ``[B, P_max, 3]`` points padded with zeros, or None when no frame had LiDAR.
        lidar_mask: ``[B, P_max]`` bool, True on real points (None with ``lidar``).
        loss_images: ``[B, N, 3, h, w]`` or None.
        loss_intrinsics: ``[B, N, 3, 3]`` or None.
        cues: each cue stacked, e.g. ``"flow"`` ``[B, N, 2, h, w]``.
    """

    images: torch.Tensor
    intrinsics: torch.Tensor
    cam_to_ego: torch.Tensor
    ego_to_global: torch.Tensor
    timestamp: torch.Tensor
    lidar: torch.Tensor | None = None
    lidar_mask: torch.Tensor | None = None
    loss_images: torch.Tensor | None = None
    loss_intrinsics: torch.Tensor | None = None
    cues: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        """B."""
        return self.images.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FrameBatch:
        """Copy with every tensor on ``device`` (dtypes kept)."""
        return _rebuild(self, lambda v: _move(v, device, non_blocking))

    def pin_memory(self) -> FrameBatch:
        """Copy with every tensor in pinned memory."""
        return _rebuild(self, _pin)


@dataclass
class GroundTruthBatch:
    """B ground truths stacked: ``occupancy``/``mask_camera``/``mask_lidar`` ``[B, X, Y, Z]``,
    ``flow`` ``[B, X, Y, Z, 2]`` m/s or None, and the shared ``grid``."""

    occupancy: torch.Tensor
    mask_camera: torch.Tensor
    mask_lidar: torch.Tensor
    grid: GridSpec
    flow: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> GroundTruthBatch:
        """Copy with every tensor on ``device``."""
        return _rebuild(self, lambda v: _move(v, device, non_blocking))

    def pin_memory(self) -> GroundTruthBatch:
        """Copy with every tensor in pinned memory."""
        return _rebuild(self, _pin)


@dataclass
class Batch:
    """A collated batch of :class:`Sample`: the same fields with a leading B.

    Attributes:
        current: :class:`FrameBatch` of the current frames.
        history: one :class:`FrameBatch` per history step, oldest first.
        next: :class:`FrameBatch` of next keyframes, or None.
        aux_prev: :class:`FrameBatch` of auxiliary earlier frames, or None.
        gt: :class:`GroundTruthBatch`, or None.
        meta: the B ``meta`` dicts.
    """

    current: FrameBatch
    history: list[FrameBatch]
    next: FrameBatch | None
    aux_prev: FrameBatch | None
    gt: GroundTruthBatch | None
    meta: list[dict[str, Any]]

    @property
    def batch_size(self) -> int:
        """B."""
        return self.current.batch_size

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Copy with every tensor on ``device`` (dtypes kept; poses stay float64)."""
        return _rebuild(self, lambda v: _move(v, device, non_blocking))

    def pin_memory(self) -> Batch:
        """Copy with every tensor in pinned memory (called by ``DataLoader(pin_memory=True)``)."""
        return _rebuild(self, _pin)


# --------------------------------------------------------------------------- collate
def _stack(name: str, values: list[torch.Tensor]) -> torch.Tensor:
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) != 1:
        raise ValueError(f"collate_samples: {name} has different shapes across the batch: {sorted(shapes)}")
    return torch.stack(values)


def _collate_frames(name: str, frames: list[Frame]) -> FrameBatch:
    with_lidar = [f.lidar is not None for f in frames]
    lidar = mask = None
    if any(with_lidar):
        if not all(with_lidar):
            raise ValueError(f"collate_samples: {name}.lidar is None in some samples and not in others")
        counts = [f.lidar.shape[0] for f in frames]
        p_max = max(counts)
        ref = frames[0].lidar
        lidar = ref.new_zeros((len(frames), p_max, 3))
        mask = torch.zeros((len(frames), p_max), dtype=torch.bool, device=ref.device)
        for b, f in enumerate(frames):
            lidar[b, : counts[b]] = f.lidar
            mask[b, : counts[b]] = True
    with_loss = [f.loss_images is not None for f in frames]
    if any(with_loss) and not all(with_loss):
        raise ValueError(f"collate_samples: {name}.loss_images is None in some samples and not in others")
    keys = {tuple(sorted(f.cues)) for f in frames}
    if len(keys) != 1:
        raise ValueError(f"collate_samples: {name}.cues have different keys across the batch: {sorted(keys)}")
    return FrameBatch(
        images=_stack(f"{name}.images", [f.images for f in frames]),
        intrinsics=_stack(f"{name}.intrinsics", [f.intrinsics for f in frames]),
        cam_to_ego=_stack(f"{name}.cam_to_ego", [f.cam_to_ego for f in frames]),
        ego_to_global=_stack(f"{name}.ego_to_global", [f.ego_to_global for f in frames]),
        timestamp=torch.tensor([f.timestamp for f in frames], dtype=torch.float64),
        lidar=lidar,
        lidar_mask=mask,
        loss_images=(_stack(f"{name}.loss_images", [f.loss_images for f in frames])
                     if all(with_loss) else None),
        loss_intrinsics=(_stack(f"{name}.loss_intrinsics", [f.loss_intrinsics for f in frames])
                         if all(with_loss) else None),
        cues={k: _stack(f"{name}.cues[{k!r}]", [f.cues[k] for f in frames]) for k in frames[0].cues},
    )


def _optional(name: str, values: list[Any]) -> bool:
    present = [v is not None for v in values]
    if any(present) and not all(present):
        raise ValueError(f"collate_samples: Sample.{name} is None in some samples and not in others; "
                         "a batch needs it in all or none")
    return all(present) and bool(present)


def collate_samples(samples: Sequence[Sample]) -> Batch:
    """Stack samples into a :class:`Batch` (use as ``DataLoader(collate_fn=collate_samples)``).

    Tensors are stacked along a new leading dim B. LiDAR clouds of different sizes are padded
    with zeros to the largest and ``lidar_mask`` marks the real points.

    Args:
        samples: a non-empty sequence of :class:`Sample` with equal history lengths, equal
            camera counts and resolutions, and the same optional parts present.

    Returns:
        The :class:`Batch`.

    Raises:
        ValueError: empty input, different history lengths, an optional part present in some
            samples only, or tensors of different shapes (the field is named).
    """
    if isinstance(samples, Sample) or not isinstance(samples, Sequence):
        raise TypeError(f"collate_samples expects a sequence of Sample, got {type(samples).__name__}")
    if len(samples) == 0:
        raise ValueError("collate_samples: samples must be a non-empty sequence")
    for i, s in enumerate(samples):
        if not isinstance(s, Sample):
            raise TypeError(f"collate_samples: samples[{i}] must be a Sample, got {type(s).__name__}")
    lengths = [len(s.history) for s in samples]
    if len(set(lengths)) != 1:
        raise ValueError(f"collate_samples: every Sample.history must have the same length, got {lengths}; "
                         "use the same history length for all samples of a batch")
    history = [_collate_frames(f"history[{k}]", [s.history[k] for s in samples]) for k in range(lengths[0])]
    nxt = _collate_frames("next", [s.next for s in samples]) if _optional("next", [s.next for s in samples]) \
        else None
    aux = (_collate_frames("aux_prev", [s.aux_prev for s in samples])
           if _optional("aux_prev", [s.aux_prev for s in samples]) else None)
    gt = None
    if _optional("gt", [s.gt for s in samples]):
        gts = [s.gt for s in samples]
        grids = {g.grid for g in gts}
        if len(grids) != 1:
            raise ValueError(f"collate_samples: gt.grid differs across the batch: {grids}")
        with_flow = _optional("gt.flow", [g.flow for g in gts])
        gt = GroundTruthBatch(
            occupancy=_stack("gt.occupancy", [g.occupancy for g in gts]),
            mask_camera=_stack("gt.mask_camera", [g.mask_camera for g in gts]),
            mask_lidar=_stack("gt.mask_lidar", [g.mask_lidar for g in gts]),
            grid=gts[0].grid,
            flow=_stack("gt.flow", [g.flow for g in gts]) if with_flow else None,
        )
    return Batch(current=_collate_frames("current", [s.current for s in samples]), history=history,
                 next=nxt, aux_prev=aux, gt=gt, meta=[dict(s.meta) for s in samples])


# --------------------------------------------------------------------------- poses
def relative_pose(source_to_global: torch.Tensor, target_to_global: torch.Tensor) -> torch.Tensor:
    """Transform taking points from a source ego frame to a target ego frame.

    ``target_from_source = inverse(target_to_global) @ source_to_global``, computed in float64
    (global coordinates can be kilometres; compute relative poses before casting to float32).

    Args:
        source_to_global: ``[..., 4, 4]`` ego-to-global pose of the source frame.
        target_to_global: ``[..., 4, 4]`` ego-to-global pose of the target frame (broadcasts).

    Returns:
        ``[..., 4, 4]`` float64 transform.

    >>> a = torch.eye(4, dtype=torch.float64); b = a.clone(); b[0, 3] = 2.0
    >>> relative_pose(a, b)[0, 3].item()   # a point at the source origin is 2 m behind the target
    -2.0
    """
    for name, value in (("source_to_global", source_to_global), ("target_to_global", target_to_global)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim < 2 or tuple(value.shape[-2:]) != (4, 4):
            raise ValueError(f"{name} must have shape [..., 4, 4], got {tuple(value.shape)}")
    src = source_to_global.double()
    tgt = target_to_global.double()
    rot_t = tgt[..., :3, :3].transpose(-1, -2)
    inv = torch.zeros_like(tgt)
    inv[..., :3, :3] = rot_t
    inv[..., :3, 3] = -(rot_t @ tgt[..., :3, 3:4])[..., 0]
    inv[..., 3, 3] = 1.0
    return inv @ src
