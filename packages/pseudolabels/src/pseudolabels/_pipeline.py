"""Making the cue cache for a dataset: one file per sample and cue, resumable, parallel.

Datasets are read through occflow-data's sequence readers (``frame_info``, ``next_frame_info``,
``frames_between``, ``lidar_points``); images are decoded here at their original resolution.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from occflow_data import cues as cue_io

from ._flow import DISFlow, FlowEstimator, RAFTFlow, ScaledFlow
from ._geometry import (
    KITTI_BASELINE_M,
    camera_motion,
    depth_to_disparity,
    lidar_depth_map,
    project_boxes_mask,
)
from ._masks import GEOMETRIC_MASK_THRESHOLD_PX, geometric_movable_mask
from ._track import ChainedFlowTracker
from ._version import __version__

__all__ = ["CueConfig", "DatasetConfig", "RunReport", "VerifyReport", "make_cues", "verify_cache"]

DATASETS = ("nuscenes", "kitti-odometry", "kitti-tracking")
CUES = ("flow", "track", "mask", "depth", "disparity")

# movable classes of nuScenes (category name prefixes) for the annotation mask
NUSCENES_MOVABLE = ("vehicle.", "human.pedestrian", "animal")
KITTI_MOVABLE = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram")


@dataclass(frozen=True)
class DatasetConfig:
    """Which dataset to read.

    Attributes:
        name: ``"nuscenes"``, ``"kitti-odometry"`` or ``"kitti-tracking"``.
        root: dataset root (nuScenes dataroot; the odometry ``dataset`` folder holding
            ``sequences/``; the tracking folder holding ``training/``).
        splits: split names or scene/sequence names; empty = every scene of the dataset
            (nuScenes: every scene in ``<root>/<version>/scene.json``).
        version: nuScenes table version.
        cameras: camera names in cache order, or empty for the reader's default.
    """

    name: str
    root: str
    splits: tuple[str, ...] = ()
    version: str = "v1.0-trainval"
    cameras: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"dataset: expected one of {DATASETS}, got {self.name!r}")

    def open(self) -> list[Any]:
        """The occflow-data readers (one per named split) covering the chosen scenes."""
        import occflow_data as od

        cfg = od.SequenceConfig(
            history=0,
            next_frame=False,
            aux_prev=False,
            load_lidar=False,
            **({} if self.name == "nuscenes" else {"image": od.IMAGE_KITTI}),
        )
        cams = {"cameras": self.cameras} if self.cameras else {}
        if self.name == "nuscenes":
            table = Path(self.root) / self.version / "scene.json"
            splits = self.splits or tuple(_nuscenes_scene_names(table))
            named = [s for s in splits if not s.startswith("scene-")]
            scenes = [s for s in splits if s.startswith("scene-")]
            groups: list[Any] = [*named] + ([scenes] if scenes else [])
            with contextlib.redirect_stdout(io.StringIO()):
                return [
                    od.NuScenesSequences(self.root, g, cfg, version=self.version, verbose=False, **cams)
                    for g in groups
                ]
        if self.name == "kitti-odometry":
            split: Any = list(self.splits) if self.splits else "all"
            if len(self.splits) == 1 and self.splits[0] in ("train", "val", "test", "all"):
                split = self.splits[0]
            return [od.SemanticKittiSequences(self.root, split, cfg, verbose=False, **cams)]
        split = list(self.splits) if self.splits else "all"
        if len(self.splits) == 1 and self.splits[0] == "all":
            split = "all"
        return [od.KittiTrackingSequences(self.root, split, cfg, verbose=False, **cams)]


def _nuscenes_scene_names(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"nuScenes scene table not found: {path} (is --version right?)")
    names = [rec["name"] for rec in json.loads(path.read_text())]
    if not names:
        raise ValueError(f"{path}: no scenes")
    return names


@dataclass(frozen=True)
class CueConfig:
    """How one cue is made.

    Attributes:
        cue: ``"flow"``, ``"track"``, ``"mask"``, ``"depth"`` or ``"disparity"``.
        estimator: ``"dis"`` (OpenCV, default) or ``"raft"`` (needs ``raft_weights``).
        preset: DIS preset.
        raft_weights: local RAFT state-dict file.
        raft_arch: ``"raft_small"`` or ``"raft_large"``.
        fb_check: forward-backward validity.
        flow_scale: run the flow estimator on images resized by this factor (the cue stays at
            the original resolution; 0.5 is about 4x faster).
        device: torch device of network estimators.
        mask_method: ``"geometric"`` (flow vs rigid flow, no labels) or ``"boxes"`` (projected
            annotation boxes of moving movable objects: USES LABELS).
        mask_flow: cue giving the flow of the geometric mask: ``"track"`` or ``"flow"``; read from
            the cache when there, computed otherwise.
        mask_threshold_px: residual threshold of the geometric mask, px.
        mask_relative: relative residual threshold of the geometric mask.
        mask_fill_distance: how far the geometric mask fills the LiDAR depth by nearest return
            after the column interpolation, px (smaller: fewer false positives, fewer pixels).
        moving_speed: boxes mask: minimum object speed, m/s (0 = every movable object).
        min_depth: LiDAR depth: drop nearer points (the ego vehicle), metres.
        baseline: disparity baseline, metres (None = the released code's 0.5327 m).
    """

    cue: str
    estimator: str = "dis"
    preset: str = "medium"
    raft_weights: str | None = None
    raft_arch: str = "raft_small"
    fb_check: bool = True
    flow_scale: float = 1.0
    device: str = "cpu"
    mask_method: str = "geometric"
    mask_flow: str = "track"
    mask_threshold_px: float = GEOMETRIC_MASK_THRESHOLD_PX
    mask_relative: float = 0.1
    mask_fill_distance: float = 30.0
    moving_speed: float = 0.5
    min_depth: float = 1.0
    baseline: float | None = None

    def __post_init__(self) -> None:
        if self.cue not in CUES:
            raise ValueError(f"cue: expected one of {CUES}, got {self.cue!r}")
        if self.estimator not in ("dis", "raft"):
            raise ValueError(f"estimator: expected 'dis' or 'raft', got {self.estimator!r}")
        if self.mask_method not in ("geometric", "boxes"):
            raise ValueError(f"mask_method: expected 'geometric' or 'boxes', got {self.mask_method!r}")
        if not 0 < self.flow_scale <= 1:
            raise ValueError(f"flow_scale: expected in (0, 1], got {self.flow_scale}")
        if self.mask_flow not in ("flow", "track"):
            raise ValueError(f"mask_flow: expected 'flow' or 'track', got {self.mask_flow!r}")

    def build_estimator(self) -> FlowEstimator:
        if self.estimator == "raft":
            if not self.raft_weights:
                raise ValueError("estimator 'raft' needs raft_weights (a local file; nothing is downloaded)")
            est: FlowEstimator = RAFTFlow(
                self.raft_weights, self.raft_arch, device=self.device, fb_check=self.fb_check
            )
        else:
            est = DISFlow(self.preset, fb_check=self.fb_check)
        return est if self.flow_scale == 1.0 else ScaledFlow(est, self.flow_scale)

    def manifest_entry(self) -> tuple[str, dict[str, Any], dict[str, str]]:
        """(estimator name, settings, versions) recorded in the manifest."""
        versions = {"pseudolabels": __version__, "torch": torch.__version__, "opencv": cv2.__version__}
        if self.cue in ("flow", "track") or (self.cue == "mask" and self.mask_method == "geometric"):
            est_settings: dict[str, Any] = {
                "estimator": self.estimator,
                "fb_check": self.fb_check,
                "flow_scale": self.flow_scale,
            }
            if self.estimator == "dis":
                est_settings["preset"] = self.preset
            else:
                est_settings.update(weights=Path(self.raft_weights or "").name, arch=self.raft_arch)
        if self.cue == "flow":
            return (
                ("opencv-dis" if self.estimator == "dis" else f"torchvision-{self.raft_arch}"),
                est_settings,
                versions,
            )
        if self.cue == "track":
            return "chained-flow", {**est_settings, "min_valid": 0.999}, versions
        if self.cue == "mask":
            if self.mask_method == "boxes":
                return "annotation-boxes (uses labels)", {"moving_speed": self.moving_speed}, versions
            return (
                "geometric-residual",
                {
                    **est_settings,
                    "flow": self.mask_flow,
                    "threshold_px": self.mask_threshold_px,
                    "relative": self.mask_relative,
                    "fill_distance": self.mask_fill_distance,
                    "min_depth": self.min_depth,
                },
                versions,
            )
        if self.cue == "depth":
            return (
                "lidar-nearest",
                {"min_depth": self.min_depth, "depth": "z along the optical axis"},
                versions,
            )
        return (
            "lidar-disparity",
            {"min_depth": self.min_depth, "baseline": self.baseline if self.baseline else KITTI_BASELINE_M},
            versions,
        )


# ------------------------------------------------------------------------------------- loading


def _read_rgb(path: Path) -> torch.Tensor:
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if data is None:
        raise ValueError(f"could not read image {path}")
    rgb = cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


def _images(info: Any) -> list[torch.Tensor]:
    return [_read_rgb(Path(p)) for p in info.image_paths]


@dataclass
class _Work:
    """Per-process state: the readers, the estimator and the cache folder."""

    dataset: DatasetConfig
    config: CueConfig
    cache: str
    readers: list[Any] = field(default_factory=list)
    estimator: FlowEstimator | None = None
    nusc: Any = None

    def setup(self) -> None:
        if not self.readers:
            self.readers = self.dataset.open()
        needs_flow = self.config.cue in ("flow", "track") or (
            self.config.cue == "mask" and self.config.mask_method == "geometric"
        )
        if needs_flow:
            self.estimator = self.config.build_estimator()

    # -- the cues of one sample (None: not defined for this sample, e.g. no next keyframe)
    def flow_arrays(self, r: Any, i: int, cue: str) -> dict[str, np.ndarray] | None:
        info, nxt = r.frame_info(i), r.next_frame_info(i)
        if nxt is None:
            return None
        if cue == "flow":
            frames = [info, nxt]
            est = self.estimator
            pairs = [est.estimate(a, b) for a, b in zip(_images(info), _images(nxt), strict=True)]
        else:
            frames = r.frames_between(i)
            tracker = ChainedFlowTracker(self.estimator)
            # one camera at a time: only that camera's images of the sweeps are in memory
            pairs = [
                tracker.track(torch.stack([_read_rgb(Path(f.image_paths[c])) for f in frames]))
                for c in range(len(info.image_paths))
            ]
        flow = torch.stack([f for f, _ in pairs]).numpy().astype(np.float16)
        valid = torch.stack([v for _, v in pairs]).numpy()
        return {"flow": flow, "valid": valid}

    def depth_maps(self, r: Any, info: Any, hw: list[tuple[int, int]]) -> torch.Tensor:
        pts = r.lidar_points(info)
        return torch.stack(
            [
                lidar_depth_map(
                    pts,
                    torch.from_numpy(info.intrinsics[c]),
                    torch.from_numpy(info.cam_to_ego[c]),
                    hw[c],
                    min_depth=self.config.min_depth,
                )
                for c in range(len(info.image_paths))
            ]
        )

    def arrays(self, r: Any, i: int) -> dict[str, np.ndarray] | None:
        cue = self.config.cue
        info = r.frame_info(i)
        if cue in ("flow", "track"):
            return self.flow_arrays(r, i, cue)
        hw = [_image_hw(p) for p in info.image_paths]
        if cue == "depth":
            return {"depth": self.depth_maps(r, info, hw).numpy().astype(np.float16)}
        if cue == "disparity":
            depth = self.depth_maps(r, info, hw)
            base = self.config.baseline or KITTI_BASELINE_M
            disp = torch.stack(
                [
                    depth_to_disparity(depth[c], float(info.intrinsics[c][0, 0]), base)
                    for c in range(depth.shape[0])
                ]
            )
            return {"disparity": disp.numpy().astype(np.float32)}
        if self.config.mask_method == "boxes":
            return {"mask": self.box_masks(r, i, info, hw)}
        return self.geometric_masks(r, i, info, hw)

    def geometric_masks(
        self, r: Any, i: int, info: Any, hw: list[tuple[int, int]]
    ) -> dict[str, np.ndarray] | None:
        nxt = r.next_frame_info(i)
        if nxt is None:
            return None
        src = self.config.mask_flow
        try:
            cached = cue_io.load_cue(self.cache, src, info.key)
            flow, valid = cached["flow"], cached["valid"]
        except cue_io.CueFileError:
            arrays = self.flow_arrays(r, i, src)
            flow, valid = torch.from_numpy(arrays["flow"]).float(), torch.from_numpy(arrays["valid"])
        try:
            depth = cue_io.load_cue(self.cache, "depth", info.key)["depth"]
        except cue_io.CueFileError:
            depth = self.depth_maps(r, info, hw)
        masks = []
        for c in range(len(info.image_paths)):
            c2e = torch.from_numpy(info.cam_to_ego[c])
            motion = camera_motion(
                c2e,
                torch.from_numpy(info.ego_to_global),
                torch.from_numpy(nxt.cam_to_ego[c]),
                torch.from_numpy(nxt.ego_to_global),
            )
            masks.append(
                geometric_movable_mask(
                    flow[c],
                    valid[c],
                    depth[c],
                    torch.from_numpy(info.intrinsics[c]),
                    motion,
                    threshold_px=self.config.mask_threshold_px,
                    relative=self.config.mask_relative,
                    fill_distance=self.config.mask_fill_distance,
                )
            )
        return {"mask": torch.stack(masks).numpy()}

    def box_masks(self, r: Any, i: int, info: Any, hw: list[tuple[int, int]]) -> np.ndarray:
        if self.dataset.name == "nuscenes":
            return self._nuscenes_boxes(r, info, hw)
        if self.dataset.name == "kitti-tracking":
            return self._kitti_boxes(r, i, info, hw)
        raise ValueError(
            "mask_method 'boxes' needs annotations: nuscenes or kitti-tracking, not kitti-odometry"
        )

    def _nuscenes_boxes(self, r: Any, info: Any, hw: list[tuple[int, int]]) -> np.ndarray:
        from nuscenes.nuscenes import NuScenes
        from pyquaternion import Quaternion

        if self.nusc is None:
            with contextlib.redirect_stdout(io.StringIO()):
                self.nusc = NuScenes(version=self.dataset.version, dataroot=self.dataset.root, verbose=False)
        nusc = self.nusc
        sample = nusc.get("sample", info.key)
        global_to_ego = np.linalg.inv(info.ego_to_global)
        corners = []
        for ann_token in sample["anns"]:
            ann = nusc.get("sample_annotation", ann_token)
            if not ann["category_name"].startswith(NUSCENES_MOVABLE):
                continue
            if self.config.moving_speed > 0:
                v = nusc.box_velocity(ann_token)
                if not np.isfinite(v).all() or np.linalg.norm(v[:2]) < self.config.moving_speed:
                    continue
            w, l, h = ann["size"]
            rot = Quaternion(ann["rotation"]).rotation_matrix
            center = np.asarray(ann["translation"])
            signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * 0.5
            world = (signs * np.array([l, w, h])) @ rot.T + center
            corners.append(world @ global_to_ego[:3, :3].T + global_to_ego[:3, 3])
        return self._project(corners, info, hw)

    def _kitti_boxes(self, r: Any, i: int, info: Any, hw: list[tuple[int, int]]) -> np.ndarray:
        seq, frame = info.key.rsplit("_", 1)
        label = Path(self.dataset.root) / "training" / "label_02" / f"{seq}.txt"
        calib_path = Path(self.dataset.root) / "training" / "calib" / f"{seq}.txt"
        if not label.is_file():
            raise FileNotFoundError(f"KITTI tracking labels not found: {label}")
        import occflow_data as od

        calib = od.read_kitti_calib(calib_path)
        r0 = np.eye(4)
        r0[:3, :3] = np.asarray(calib["R_rect"] if "R_rect" in calib else calib["R0_rect"]).reshape(3, 3)
        tr = np.eye(4)
        tr[:3, :] = np.asarray(
            calib["Tr_velo_cam"] if "Tr_velo_cam" in calib else calib["Tr_velo_to_cam"]
        ).reshape(3, 4)
        rect_to_velo = np.linalg.inv(r0 @ tr)
        corners = []
        for line in label.read_text().splitlines():
            f = line.split()
            if len(f) < 17 or int(f[0]) != int(frame) or f[2] not in KITTI_MOVABLE:
                continue
            h, w, l = map(float, f[10:13])
            x, y, z, ry = map(float, f[13:17])
            # KITTI boxes: origin at the bottom centre, y down, yaw ry about the camera y axis
            local = np.array(
                [
                    [sx * l / 2, -h * (sy + 1) / 2, sz * w / 2]
                    for sx in (-1, 1)
                    for sy in (-1, 1)
                    for sz in (-1, 1)
                ]
            )
            rot = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
            rect = local @ rot.T + np.array([x, y, z])
            corners.append(rect @ rect_to_velo[:3, :3].T + rect_to_velo[:3, 3])
        return self._project(corners, info, hw)

    @staticmethod
    def _project(corners: list[np.ndarray], info: Any, hw: list[tuple[int, int]]) -> np.ndarray:
        box = torch.from_numpy(np.stack(corners)) if corners else torch.zeros(0, 8, 3, dtype=torch.float64)
        return torch.stack(
            [
                project_boxes_mask(
                    box, torch.from_numpy(info.intrinsics[c]), torch.from_numpy(info.cam_to_ego[c]), hw[c]
                )
                for c in range(len(info.image_paths))
            ]
        ).numpy()


def _image_hw(path: Path) -> tuple[int, int]:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ValueError(f"could not read image {path}")
    return int(data.shape[0]), int(data.shape[1])


# ------------------------------------------------------------------------------------- running

_WORK: list[_Work] = []  # the one _Work of a worker process (set by its initializer; never shared)


def _init_worker(dataset: DatasetConfig, config: CueConfig, cache: str) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    work = _Work(dataset, config, cache)
    work.setup()
    _WORK[:] = [work]


def _run_one(reader: int, index: int) -> tuple[str, str]:
    return _process(_WORK[0], reader, index)


def _process(work: _Work, reader: int, index: int) -> tuple[str, str]:
    r = work.readers[reader]
    key = r.sample_key(index)
    arrays = work.arrays(r, index)
    if arrays is None:
        return key, "not-applicable"
    cue_io.save_cue(work.cache, work.config.cue, key, arrays)
    return key, "written"


@dataclass
class RunReport:
    """What a run did: counts of samples by outcome, and the errors met."""

    cue: str
    total: int = 0
    written: int = 0
    skipped_valid: int = 0
    not_applicable: int = 0
    replaced_invalid: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.cue}: {self.total} samples, {self.written} written, {self.skipped_valid} already valid, "
            f"{self.replaced_invalid} invalid files remade, {self.not_applicable} without this cue "
            f"(no next keyframe), {len(self.errors)} errors"
        )


def _samples(readers: list[Any], limit: int | None) -> Iterator[tuple[int, int]]:
    seen: set[str] = set()
    count = 0
    for ri, r in enumerate(readers):
        for i in range(len(r)):
            key = r.sample_key(i)
            if key in seen:
                continue
            seen.add(key)
            yield ri, i
            count += 1
            if limit is not None and count >= limit:
                return


def make_cues(
    dataset: DatasetConfig,
    config: CueConfig,
    cache: str | os.PathLike,
    *,
    workers: int = 1,
    limit: int | None = None,
    progress: bool = True,
) -> RunReport:
    """Make one cue for every sample of a dataset, skipping files already complete and valid.

    Files are written atomically (:func:`occflow_data.cues.save_cue`): a killed run loses at most
    the files in flight and leaves only hidden temporary files, removed at the next start. An
    existing file is kept only when :func:`occflow_data.cues.check_cue_file` accepts it.

    Args:
        dataset: what to read.
        config: how to make the cue.
        cache: cache root.
        workers: processes (1 = in this process).
        limit: stop after this many samples (in dataset order), or None for all.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`RunReport`.
    """
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers: expected >= 1, got {workers}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit: expected >= 1 or None, got {limit}")
    cache = str(cache)
    estimator, settings, versions = config.manifest_entry()
    cue_io.update_manifest(
        cache, dataset.name, config.cue, estimator=estimator, settings=settings, versions=versions
    )
    cue_io.remove_temporary_files(cache)
    report = RunReport(config.cue)
    work = _Work(dataset, config, cache)
    work.readers = dataset.open()
    todo = []
    for ri, i in _samples(work.readers, limit):
        report.total += 1
        r = work.readers[ri]
        path = cue_io.cue_path(cache, config.cue, r.sample_key(i))
        if path.exists():
            n = len(r.frame_info(i).image_paths)
            if cue_io.check_cue_file(path, config.cue, num_cameras=n) is None:
                report.skipped_valid += 1
                continue
            report.replaced_invalid += 1
        todo.append((ri, i))
    bar = tqdm(total=len(todo), desc=f"{config.cue}", unit="sample", disable=not progress)
    outcomes = []
    if workers == 1:
        work.setup()
        for ri, i in todo:
            try:
                outcomes.append(_process(work, ri, i))
            except Exception as e:  # report and go on: one bad sample must not stop the run
                report.errors.append(f"{work.readers[ri].sample_key(i)}: {type(e).__name__}: {e}")
            bar.update()
    else:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(dataset, config, cache)
        ) as pool:
            futures = {pool.submit(_run_one, ri, i): (ri, i) for ri, i in todo}
            for fut in as_completed(futures):
                ri, i = futures[fut]
                try:
                    outcomes.append(fut.result())
                except Exception as e:
                    report.errors.append(f"{work.readers[ri].sample_key(i)}: {type(e).__name__}: {e}")
                bar.update()
    bar.close()
    for _, what in outcomes:
        if what == "written":
            report.written += 1
        else:
            report.not_applicable += 1
    return report


@dataclass
class VerifyReport:
    """Result of :func:`verify_cache`."""

    checked: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    deleted: list[str] = field(default_factory=list)
    temporary_removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"checked {self.checked} files: {len(self.bad)} bad, {len(self.deleted)} deleted, "
            f"{len(self.temporary_removed)} temporary files removed, {len(self.missing)} missing"
        ]
        lines += [f"  BAD {p}: {why}" for p, why in self.bad]
        lines += [f"  MISSING {m}" for m in self.missing[:20]]
        if len(self.missing) > 20:
            lines.append(f"  ... {len(self.missing) - 20} more missing")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_cache(
    cache: str | os.PathLike,
    *,
    cues: tuple[str, ...] = (),
    delete: bool = False,
    dataset: DatasetConfig | None = None,
    progress: bool = True,
) -> VerifyReport:
    """Check every cue file of a cache; optionally delete the bad ones so a rerun remakes them.

    Args:
        cache: cache root.
        cues: cues to check; empty = those in the manifest (or every cue folder present).
        delete: delete bad files and stale temporary files.
        dataset: when given, also list the samples whose files are missing.
        progress: show a tqdm progress bar.
    """
    from tqdm import tqdm

    root = Path(cache)
    manifest = cue_io.read_manifest(root)
    if not cues:
        cues = (
            tuple(manifest["cues"]) if manifest else tuple(c for c in cue_io.CUE_SPECS if (root / c).is_dir())
        )
    report = VerifyReport()
    if delete:
        report.temporary_removed = [str(p) for p in cue_io.remove_temporary_files(root)]
    for cue in cues:
        files = cue_io.list_cue_files(root, cue)
        for path in tqdm(files, desc=f"verify {cue}", unit="file", disable=not progress):
            report.checked += 1
            reason = cue_io.check_cue_file(path, cue)
            if reason is not None:
                report.bad.append((str(path), reason))
                if delete:
                    path.unlink(missing_ok=True)
                    report.deleted.append(str(path))
        if dataset is not None:
            for r in dataset.open():
                for i in range(len(r)):
                    path = cue_io.cue_path(root, cue, r.sample_key(i))
                    if not path.exists() and not (
                        cue in ("flow", "track", "mask") and r.next_frame_info(i) is None
                    ):
                        report.missing.append(str(path))
    return report
