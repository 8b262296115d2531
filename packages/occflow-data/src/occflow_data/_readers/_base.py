"""What every sequence reader shares: the config, the index of frames, sample assembly.

A reader (nuScenes, SemanticKITTI, KITTI tracking) only builds, per scene, the list of its
keyframes and of all its camera frames (keyframes plus, on nuScenes, the sweeps between them)
as :class:`FrameInfo` records: file paths, calibration at the original resolution, poses and
timestamps. Loading and preprocessing is common and lives here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .._preprocess import IMAGE_NUSCENES, ImageConfig, ResizeCrop, lidar_depth_maps
from .._schema import Frame, GroundTruth, Sample
from ..cues import CUE_SPECS, cue_path, load_cue


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SequenceConfig:
    """How a reader assembles samples.

    Attributes:
        history: number of past keyframes given to the model (t-k .. t-1), >= 0.
        history_stride: keyframe step between history frames (1 = consecutive keyframes).
        next_frame: load the next keyframe t+1 as a supervision frame (``Sample.next``).
        aux_prev: draw an auxiliary earlier frame (``Sample.aux_prev``) among all earlier camera
            frames of the scene (sweeps included on nuScenes) with probability proportional to
            a Gaussian of their ego distance from frame t, restricted to ``aux_range``.
        aux_mean: mean of that Gaussian, metres (Let Occ Flow: 0.5).
        aux_sigma: its standard deviation, metres (Let Occ Flow: 0.5).
        aux_range: (min, max) ego distance of candidates, metres (Let Occ Flow: 0.4 - 30). When no
            earlier frame lies in range (the car stands still) the latest earlier frame is used
            and the sample is counted in ``summary.aux_fallback``.
        image: model input and loss resolutions (:class:`ImageConfig`).
        load_lidar: attach the current frame's LiDAR points (ego frame) to ``Sample.current``.
        lidar_depth: add ``cues["lidar_depth"]`` to the current frame, projected from its LiDAR
            at the loss resolution, when the cue cache has no depth cue.
        cue_cache: folder of cached cues (:mod:`occflow_data.cues` layout), or None.
        cues: cached cues to load for the current frame, at the loss resolution: "flow" or
            "track" (-> ``cues["flow"]``, ``cues["flow_valid"]``; vectors scaled), "mask" (->
            ``cues["movable"]``), "depth" (-> ``cues["lidar_depth"]``), "disparity" (KITTI, ->
            ``cues["disparity"]``, scaled with the width).
        occ_root: nuScenes only: folder holding Occ3D's ``gts/`` (ground truth is loaded when set).
        load_gt: SemanticKITTI only: load the voxel ground truth (frames without it are skipped
            and counted in ``summary.skipped_no_gt``).
        scene_start: what to do with keyframes that have fewer than ``history`` earlier
            keyframes: "skip" them (counted in ``summary.skipped_history``) or "pad" the history by
            repeating the scene's first keyframe (counted in ``summary.padded_history``).
        seed: seed of the auxiliary-frame draw; the draw depends only on (seed, epoch, index), so
            it is the same in every DataLoader worker layout.
    """

    history: int = 2
    history_stride: int = 1
    next_frame: bool = True
    aux_prev: bool = True
    aux_mean: float = 0.5
    aux_sigma: float = 0.5
    aux_range: tuple[float, float] = (0.4, 30.0)
    image: ImageConfig = IMAGE_NUSCENES
    load_lidar: bool = True
    lidar_depth: bool = False
    cue_cache: str | Path | None = None
    cues: tuple[str, ...] = ()
    occ_root: str | Path | None = None
    load_gt: bool = False
    scene_start: Literal["skip", "pad"] = "skip"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("history", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"SequenceConfig.{name} must be an int >= 0, got {value!r}")
        if not isinstance(self.history_stride, int) or self.history_stride < 1:
            raise ValueError(
                f"SequenceConfig.history_stride must be an int >= 1, got {self.history_stride!r}"
            )
        if not (math.isfinite(self.aux_mean) and math.isfinite(self.aux_sigma) and self.aux_sigma > 0):
            raise ValueError(
                f"SequenceConfig.aux_mean must be finite and aux_sigma > 0, got "
                f"{self.aux_mean!r}, {self.aux_sigma!r}"
            )
        lo, hi = self.aux_range
        if not (0 <= lo < hi):
            raise ValueError(
                f"SequenceConfig.aux_range must be (min, max) with 0 <= min < max, got {self.aux_range!r}"
            )
        if not isinstance(self.image, ImageConfig):
            raise TypeError(f"SequenceConfig.image must be an ImageConfig, got {type(self.image).__name__}")
        if self.scene_start not in ("skip", "pad"):
            raise ValueError(f"SequenceConfig.scene_start must be 'skip' or 'pad', got {self.scene_start!r}")
        if isinstance(self.cues, str) or not all(isinstance(c, str) for c in self.cues):
            raise ValueError(f"SequenceConfig.cues must be a tuple of cue names, got {self.cues!r}")
        unknown = [c for c in self.cues if c not in CUE_SPECS]
        if unknown:
            raise ValueError(
                f"SequenceConfig.cues has unknown cues {unknown}; expected names among {sorted(CUE_SPECS)}"
            )
        if "flow" in self.cues and "track" in self.cues:
            raise ValueError(
                "SequenceConfig.cues may hold 'flow' or 'track' (both fill cues['flow']), not both"
            )
        if self.cues and self.cue_cache is None:
            raise ValueError(f"SequenceConfig.cues={self.cues!r} needs SequenceConfig.cue_cache")


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class FrameInfo:
    """Where one multi-camera frame lives on disk, with its calibration at the ORIGINAL resolution.

    Attributes:
        key: the sample key (nuScenes sample token, or sample-data token of CAM_FRONT for a
            sweep; KITTI ``"<seq>_<frame:06d>"``); names cue-cache and ground-truth files.
        scene: scene or sequence name.
        index: position of the frame in the scene's frame list.
        timestamp: seconds.
        ego_to_global: ``[4, 4]`` float64 ego-to-world pose.
        image_paths: one image file per camera, in the reader's camera order.
        intrinsics: ``[N, 3, 3]`` float64 intrinsics of the original images.
        cam_to_ego: ``[N, 4, 4]`` float64 camera (OpenCV) to ego transforms.
        lidar_path: LiDAR scan file, or None (sweeps).
        lidar_to_ego: ``[4, 4]`` float64 LiDAR-sensor to ego transform, or None.
        is_keyframe: whether the frame is a keyframe (a possible current / next / history frame).
        gt_path: ground-truth file or stem, or None.
    """

    key: str
    scene: str
    index: int
    timestamp: float
    ego_to_global: np.ndarray
    image_paths: tuple[Path, ...]
    intrinsics: np.ndarray
    cam_to_ego: np.ndarray
    lidar_path: Path | None = None
    lidar_to_ego: np.ndarray | None = None
    is_keyframe: bool = True
    gt_path: Path | None = None


@dataclass
class _Scene:
    name: str
    frames: list[FrameInfo]  # every camera frame, time ordered
    keyframes: list[int]  # positions in ``frames`` of the keyframes


@dataclass(frozen=True)
class _SampleIndex:
    scene: int
    keyframe: int  # position in the scene's keyframe list
    history: tuple[int, ...]  # positions in ``frames``
    next: int | None
    aux: np.ndarray  # candidate positions in ``frames``
    aux_prob: np.ndarray


@dataclass
class ReaderSummary:
    """What a reader found and what it left out. Printed once when the reader is built.

    Attributes:
        dataset: reader name.
        split: the split asked for.
        scenes: scenes read.
        scenes_missing: scenes of a named split absent from the data on disk.
        keyframes: keyframes in the scenes read.
        frames: camera frames (keyframes + sweeps) in the scenes read.
        samples: samples the reader yields.
        skipped_history: keyframes skipped for lack of history (scene starts, ``scene_start="skip"``).
        padded_history: samples whose history was padded by repetition (``scene_start="pad"``).
        skipped_no_next: keyframes skipped because they have no next keyframe (scene ends).
        skipped_no_aux: keyframes skipped because no earlier frame exists for ``aux_prev``.
        skipped_no_gt: keyframes skipped because their ground truth file is absent (KITTI).
        aux_fallback: samples with no earlier frame within ``aux_range`` (latest earlier frame used).
    """

    dataset: str
    split: str
    scenes: int = 0
    scenes_missing: list[str] = field(default_factory=list)
    keyframes: int = 0
    frames: int = 0
    samples: int = 0
    skipped_history: int = 0
    padded_history: int = 0
    skipped_no_next: int = 0
    skipped_no_aux: int = 0
    skipped_no_gt: int = 0
    aux_fallback: int = 0

    def __str__(self) -> str:
        missing = (
            f" ({len(self.scenes_missing)} scenes of the split not on disk)" if self.scenes_missing else ""
        )
        return (
            f"{self.dataset} [{self.split}]: {self.samples} samples from {self.keyframes} keyframes in "
            f"{self.scenes} scenes{missing}; skipped: {self.skipped_history} without enough history, "
            f"{self.skipped_no_next} without a next keyframe, {self.skipped_no_aux} without an earlier "
            f"frame, {self.skipped_no_gt} without ground truth; padded history: {self.padded_history}; "
            f"aux frame out of range (fallback): {self.aux_fallback}"
        )


# --------------------------------------------------------------------------- file helpers
def read_image(path: Path) -> np.ndarray:
    """Decode an image file into ``[H, W, 3]`` uint8 RGB; a clear error when missing or corrupt."""
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if data is None:
        raise ValueError(f"could not decode image {path}: expected a readable JPEG or PNG file")
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def resample_image(plan: ResizeCrop, image: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 (or float) image to ``[3, h, w]`` float32 in [0, 1] with ``plan``
    (see :func:`_resample_image`)."""
    return torch.from_numpy(_resample_image(plan, image))


def _resample_image(plan: ResizeCrop, image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 (or float) image to ``[3, h, w]`` float32 in [0, 1] with ``plan``.

    OpenCV's INTER_AREA (downscaling) and INTER_LINEAR (upscaling) use the same half-pixel
    centre rule as :func:`occflow_data.resize_crop_intrinsics`.
    """
    if tuple(image.shape[:2]) != tuple(plan.source):
        raise ValueError(f"image must be [H, W, 3] with (H, W) = {plan.source}, got {image.shape}")
    if tuple(plan.resized) != tuple(plan.source):
        down = plan.resized[0] < plan.source[0] or plan.resized[1] < plan.source[1]
        image = cv2.resize(
            image,
            (plan.resized[1], plan.resized[0]),
            interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR,
        )
    h, w = plan.size
    # numpy (single-threaded) for the per-pixel work: small images are faster without torch's pool
    crop = image[plan.top : plan.top + h, plan.left : plan.left + w].transpose(2, 0, 1)
    if crop.dtype == np.uint8:
        out = crop.astype(np.float32) * np.float32(1.0 / 255.0)
    else:
        out = np.clip(crop.astype(np.float32), 0.0, 1.0)
    return np.ascontiguousarray(out)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a ``[4, 4]`` transform to ``[P, 3]`` points."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


# --------------------------------------------------------------------------- base dataset
class SequenceDataset(Dataset):
    """Base of the readers: a torch Dataset of :class:`~occflow_data.Sample`.

    Subclasses build ``self._scenes`` and call :meth:`_build_index`. ``len(ds)`` samples;
    ``ds[i]`` loads one; ``ds.summary`` says what was read and what was left out.
    """

    dataset_name = "sequences"
    #: number of float32 values per LiDAR point in the scan files (x, y, z first).
    lidar_dims = 4

    def __init__(self, config: SequenceConfig, split_name: str, verbose: bool) -> None:
        if not isinstance(config, SequenceConfig):
            raise TypeError(f"config must be a SequenceConfig, got {type(config).__name__}")
        self.config = config
        self.epoch = 0
        self.verbose = verbose
        self._scenes: list[_Scene] = []
        self._samples: list[_SampleIndex] = []
        self.summary = ReaderSummary(dataset=self.dataset_name, split=split_name)

    # ------------------------------------------------------------ public API
    @property
    def cameras(self) -> tuple[str, ...]:
        """Camera names, in the order of the N axis of every frame."""
        return self._cameras

    @property
    def scenes(self) -> list[str]:
        """Names of the scenes read, in order."""
        return [s.name for s in self._scenes]

    def __len__(self) -> int:
        return len(self._samples)

    def set_epoch(self, epoch: int) -> None:
        """Change the auxiliary-frame draw (call before each epoch; workers get it when they start)."""
        self.epoch = int(epoch)

    def frame_info(self, index: int) -> FrameInfo:
        """The current keyframe of sample ``index`` (paths and calibration at the original resolution)."""
        s = self._sample(index)
        scene = self._scenes[s.scene]
        return scene.frames[scene.keyframes[s.keyframe]]

    def sample_key(self, index: int) -> str:
        """Key of sample ``index`` in the cue cache (nuScenes sample token, KITTI ``seq_frame``)."""
        return self.frame_info(index).key

    def next_frame_info(self, index: int) -> FrameInfo | None:
        """The next keyframe of sample ``index`` (None if the scene ends there)."""
        s = self._sample(index)
        scene = self._scenes[s.scene]
        if s.keyframe + 1 >= len(scene.keyframes):
            return None
        return scene.frames[scene.keyframes[s.keyframe + 1]]

    def keyframe_poses(self, index: int) -> tuple[np.ndarray, int]:
        """Ego poses of every keyframe of sample ``index``'s scene and the position of its own.

        Used by RayIoU, whose ray origins are the scene's keyframe positions around the sample.

        Returns:
            ``(poses [K, 4, 4] float64 ego-to-global in time order, ref)`` with ``poses[ref]`` the
            pose of the sample's current keyframe.
        """
        s = self._sample(index)
        scene = self._scenes[s.scene]
        poses = np.stack([scene.frames[k].ego_to_global for k in scene.keyframes]).astype(np.float64)
        return poses, s.keyframe

    def frames_between(self, index: int) -> list[FrameInfo]:
        """All camera frames from the current keyframe to the next one, both included, in time
        order (on nuScenes the sweeps between them: for tracking-style flow cues)."""
        s = self._sample(index)
        scene = self._scenes[s.scene]
        start = scene.keyframes[s.keyframe]
        stop = scene.keyframes[s.keyframe + 1] if s.keyframe + 1 < len(scene.keyframes) else start
        return scene.frames[start : stop + 1]

    def lidar_points(self, info: FrameInfo) -> torch.Tensor:
        """``[P, 3]`` float32 LiDAR points of ``info`` in its ego frame, metres."""
        if info.lidar_path is None or info.lidar_to_ego is None:
            raise ValueError(f"frame {info.key} of {info.scene} has no LiDAR scan")
        path = info.lidar_path
        if not path.is_file():
            raise FileNotFoundError(f"LiDAR scan not found: {path} (frame {info.key} of {info.scene})")
        raw = np.fromfile(path, dtype=np.float32)
        if raw.size % self.lidar_dims:
            raise ValueError(
                f"LiDAR scan {path} has {raw.size} float32 values, expected a multiple of "
                f"{self.lidar_dims} ({self.lidar_dims} values per point)"
            )
        pts = raw.reshape(-1, self.lidar_dims)[:, :3].astype(np.float64)
        return torch.from_numpy(transform_points(info.lidar_to_ego, pts).astype(np.float32))

    def aux_distribution(self, index: int) -> tuple[list[FrameInfo], np.ndarray]:
        """Candidate auxiliary frames of sample ``index`` and their draw probabilities."""
        s = self._sample(index)
        scene = self._scenes[s.scene]
        return [scene.frames[i] for i in s.aux], s.aux_prob.copy()

    def draw_aux(self, index: int, epoch: int | None = None) -> FrameInfo | None:
        """The auxiliary earlier frame of sample ``index`` for ``epoch`` (default: the current epoch).

        Deterministic in (``config.seed``, epoch, index); None when ``config.aux_prev`` is off.
        """
        s = self._sample(index)
        if not len(s.aux):
            return None
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.config.seed, epoch, int(index) % len(self._samples)])
        return self._scenes[s.scene].frames[int(s.aux[rng.choice(len(s.aux), p=s.aux_prob)])]

    def __getitem__(self, index: int) -> Sample:
        s = self._sample(index)
        index = int(index) % len(self._samples)  # negative indices count from the end
        scene = self._scenes[s.scene]
        cfg = self.config
        cur = scene.frames[scene.keyframes[s.keyframe]]
        current = self.load_frame(cur, loss=True, lidar=cfg.load_lidar, cues=True)
        history = [self.load_frame(scene.frames[i], loss=False, lidar=False, cues=False) for i in s.history]
        nxt = aux = None
        meta: dict[str, Any] = {
            "dataset": self.dataset_name,
            "scene": scene.name,
            "token": cur.key,
            "index": int(index),
            "keyframe": s.keyframe,
            "history_tokens": [scene.frames[i].key for i in s.history],
        }
        if s.next is not None:
            info = scene.frames[s.next]
            nxt = self.load_frame(info, loss=True, lidar=False, cues=False)
            meta["next_token"] = info.key
        aux_info = self.draw_aux(index)
        if aux_info is not None:
            aux = self.load_frame(aux_info, loss=True, lidar=False, cues=False)
            meta["aux_token"] = aux_info.key
            shift = aux_info.ego_to_global[:3, 3] - cur.ego_to_global[:3, 3]
            meta["aux_distance"] = float(np.linalg.norm(shift))
        gt = self.load_gt(cur) if self._has_gt() else None
        return Sample(current=current, history=history, next=nxt, aux_prev=aux, gt=gt, meta=meta)

    # ------------------------------------------------------------ loading
    def load_frame(
        self, info: FrameInfo, *, loss: bool = True, lidar: bool = False, cues: bool = False
    ) -> Frame:
        """Load and preprocess one frame.

        Args:
            info: the frame record.
            loss: also produce the loss-resolution images and intrinsics.
            lidar: attach the LiDAR points (ego frame).
            cues: attach the configured cached cues (and the LiDAR depth cue) at the loss resolution.
        """
        cfg = self.config.image
        images, loss_images, ks, loss_ks, loss_plans = [], [], [], [], []
        for cam, path in enumerate(info.image_paths):
            raw = read_image(path)
            h, w = raw.shape[:2]
            k = info.intrinsics[cam]
            if not (0 < k[0, 2] < w and 0 < k[1, 2] < h):
                raise ValueError(
                    f"inconsistent calibration for {path}: principal point ({k[0, 2]:.1f}, {k[1, 2]:.1f}) "
                    f"lies outside the {w}x{h} image; expected intrinsics of this camera's original images"
                )
            plan = cfg.input_plan(h, w)
            images.append(_resample_image(plan, raw))
            ks.append(plan.intrinsics(torch.from_numpy(k)))
            if loss:
                lplan = cfg.loss_plan(h, w)
                loss_plans.append(lplan)
                loss_images.append(_resample_image(lplan, raw))
                loss_ks.append(lplan.intrinsics(torch.from_numpy(k)))
        sizes = {tuple(im.shape) for im in images}
        if len(sizes) != 1:
            raise ValueError(
                f"frame {info.key} of {info.scene}: the cameras give images of different sizes "
                f"{sorted(sizes)} after preprocessing; set ImageConfig.input_size/loss_size to crop "
                "them to one size"
            )
        points = self.lidar_points(info) if lidar and info.lidar_path is not None else None
        frame_cues: dict[str, torch.Tensor] = {}
        loss_k = torch.stack(loss_ks).float() if loss else None
        if cues and loss:
            frame_cues = self._load_cues(info, loss_plans)
            if self.config.lidar_depth and "lidar_depth" not in frame_cues and info.lidar_path is not None:
                pts = points if points is not None else self.lidar_points(info)
                frame_cues["lidar_depth"] = lidar_depth_maps(
                    pts, loss_k, torch.from_numpy(info.cam_to_ego).float(), tuple(loss_images[0].shape[-2:])
                )
        return Frame(
            images=torch.from_numpy(np.stack(images)),
            intrinsics=torch.stack(ks).float(),
            cam_to_ego=torch.from_numpy(info.cam_to_ego).float(),
            ego_to_global=torch.from_numpy(np.ascontiguousarray(info.ego_to_global, dtype=np.float64)),
            timestamp=float(info.timestamp),
            lidar=points,
            loss_images=torch.from_numpy(np.stack(loss_images)) if loss else None,
            loss_intrinsics=loss_k,
            cues=frame_cues,
        )

    def _load_cues(self, info: FrameInfo, plans: list[ResizeCrop]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        n = len(plans)
        for cue in self.config.cues:
            arrays = load_cue(self.config.cue_cache, cue, info.key)
            where = cue_path(self.config.cue_cache, cue, info.key)
            first = next(iter(arrays.values()))
            if first.shape[0] != n:
                raise ValueError(
                    f"cached cue {where} has {first.shape[0]} cameras, expected {n} "
                    f"({', '.join(self.cameras)})"
                )
            if tuple(first.shape[-2:]) != tuple(plans[0].source):
                raise ValueError(
                    f"cached cue {where} is {tuple(first.shape[-2:])} pixels, expected the original "
                    f"image size {tuple(plans[0].source)} of {info.image_paths[0]}"
                )
            if cue in ("flow", "track"):
                pairs = [p.flow(arrays["flow"][c], arrays["valid"][c]) for c, p in enumerate(plans)]
                out["flow"] = torch.stack([f for f, _ in pairs])
                out["flow_valid"] = torch.stack([v for _, v in pairs])
            elif cue == "mask":
                out["movable"] = torch.stack([p.mask(arrays["mask"][c]) for c, p in enumerate(plans)])
            elif cue == "depth":
                out["lidar_depth"] = torch.stack(
                    [p.sparse_depth(arrays["depth"][c]) for c, p in enumerate(plans)]
                )
            elif cue == "disparity":  # horizontal pixels: scales with the image width
                out["disparity"] = torch.stack(
                    [p.sparse_depth(arrays["disparity"][c]) * p.scale[1] for c, p in enumerate(plans)]
                )
        return out

    def _has_gt(self) -> bool:
        return False

    def load_gt(self, info: FrameInfo) -> GroundTruth:
        """Ground truth of a keyframe (readers with ground truth override this)."""
        raise ValueError(f"{self.dataset_name} has no ground truth configured")

    # ------------------------------------------------------------ index
    def _sample(self, index: int) -> _SampleIndex:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -len(self._samples) <= index < len(self._samples):
            raise IndexError(f"index {index} out of range for {len(self._samples)} samples")
        return self._samples[index]

    def _build_index(self, keep: Callable[[FrameInfo], bool] | None = None) -> None:
        """Fill ``self._samples`` and the summary from ``self._scenes``.

        Args:
            keep: optional filter on current keyframes (e.g. ground truth present); frames it
                rejects are counted in ``summary.skipped_no_gt``.
        """
        cfg = self.config
        summary = self.summary
        lo, hi = cfg.aux_range
        need = (
            1 + (cfg.history * cfg.history_stride if cfg.scene_start == "skip" else 0) + int(cfg.next_frame)
        )
        for si, scene in enumerate(self._scenes):
            n_key = len(scene.keyframes)
            if n_key < need:
                raise ValueError(
                    f"scene {scene.name} has {n_key} keyframes, but history={cfg.history} (stride "
                    f"{cfg.history_stride}) + the current frame"
                    f"{' + the next frame' if cfg.next_frame else ''} need {need}; lower "
                    "SequenceConfig.history, use scene_start='pad', or leave the scene out of the split"
                )
            summary.scenes += 1
            summary.keyframes += n_key
            summary.frames += len(scene.frames)
            positions = np.stack([f.ego_to_global[:3, 3] for f in scene.frames])
            times = np.array([f.timestamp for f in scene.frames])
            for k in range(n_key):
                hist_k = [k - cfg.history_stride * j for j in range(cfg.history, 0, -1)]
                padded = bool(hist_k) and hist_k[0] < 0
                if padded and cfg.scene_start == "skip":
                    summary.skipped_history += 1
                    continue
                if cfg.next_frame and k + 1 >= n_key:
                    summary.skipped_no_next += 1
                    continue
                cur_pos = scene.keyframes[k]
                if keep is not None and not keep(scene.frames[cur_pos]):
                    summary.skipped_no_gt += 1
                    continue
                aux = np.zeros(0, dtype=np.int64)
                prob = np.zeros(0)
                if cfg.aux_prev:
                    earlier = np.flatnonzero(times < times[cur_pos])
                    if len(earlier) == 0:
                        summary.skipped_no_aux += 1
                        continue
                    dist = np.linalg.norm(positions[earlier] - positions[cur_pos], axis=1)
                    inside = (dist >= lo) & (dist <= hi)
                    if inside.any():
                        aux = earlier[inside]
                        weight = np.exp(-0.5 * ((dist[inside] - cfg.aux_mean) / cfg.aux_sigma) ** 2)
                        if weight.sum() <= 0:  # far in the tail: fall back to the nearest in range
                            weight = (dist[inside] == dist[inside].min()).astype(float)
                        prob = weight / weight.sum()
                    else:
                        aux = earlier[times[earlier] == times[earlier].max()][:1]
                        prob = np.ones(1)
                        summary.aux_fallback += 1
                if padded:
                    hist_k = [max(h, 0) for h in hist_k]
                    summary.padded_history += 1
                self._samples.append(
                    _SampleIndex(
                        scene=si,
                        keyframe=k,
                        history=tuple(scene.keyframes[h] for h in hist_k),
                        next=scene.keyframes[k + 1] if cfg.next_frame else None,
                        aux=aux,
                        aux_prob=prob,
                    )
                )
        summary.samples = len(self._samples)
        if self.verbose:
            print(summary)


def check_split_names(names: Sequence[str] | str, what: str) -> list[str]:
    """Validate an explicit list of scene/sequence names."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"split must be a split name or a list of {what} names, got {names!r}")
    names = list(names)
    if not names:
        raise ValueError(f"split is an empty list of {what} names")
    if len(set(names)) != len(names):
        raise ValueError(f"split lists a {what} twice: {names}")
    return names
