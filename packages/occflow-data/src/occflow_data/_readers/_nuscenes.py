"""nuScenes through nuscenes-devkit: keyframes, the sweeps between them, Occ3D/OpenOcc ground truth.

Expected folder structure (the official nuScenes download, plus Occ3D beside or inside it)::

    <root>/
        v1.0-mini/ or v1.0-trainval/      the 13 JSON tables (version folder)
        samples/CAM_FRONT/*.jpg ...       keyframe images of the 6 cameras
        samples/LIDAR_TOP/*.pcd.bin       keyframe LiDAR scans (5 float32 per point)
        sweeps/CAM_FRONT/*.jpg ...        the camera frames between keyframes (12 Hz)
        maps/                             map images referenced by the map table
    <occ_root>/                           Occ3D-nuScenes (often <root>/.. or <root> itself)
        gts/<scene_name>/<sample_token>/labels.npz   semantics, mask_lidar, mask_camera [, flow]
        annotations.json                  (not needed by this reader)
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from volrender import OCC3D_NUSCENES, GridSpec

from .._geometry import rigid_inverse
from .._schema import GroundTruth
from ._base import FrameInfo, SequenceConfig, SequenceDataset, _Scene, check_split_names

#: The six nuScenes cameras in the usual order.
NUSCENES_CAMERAS = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)

_TABLES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)


def quaternion_matrix(wxyz: Sequence[float], where: str) -> np.ndarray:
    """``[3, 3]`` rotation of a (w, x, y, z) quaternion; ``where`` names the record for errors."""
    q = np.asarray(wxyz, dtype=np.float64)
    if q.shape != (4,) or not np.isfinite(q).all():
        raise ValueError(f"{where}: rotation must be a finite (w, x, y, z) quaternion, got {wxyz!r}")
    norm = np.linalg.norm(q)
    if abs(norm - 1.0) > 1e-3:
        raise ValueError(
            f"inconsistent calibration in {where}: rotation quaternion has norm {norm:.6f}, "
            "expected a unit quaternion"
        )
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _pose(record: dict, where: str) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = quaternion_matrix(record["rotation"], where)
    t = np.asarray(record["translation"], dtype=np.float64)
    if t.shape != (3,) or not np.isfinite(t).all():
        raise ValueError(f"{where}: translation must be 3 finite numbers, got {record['translation']!r}")
    out[:3, 3] = t
    return out


class NuScenesSequences(SequenceDataset):
    """nuScenes as a torch Dataset of :class:`~occflow_data.Sample` (read through nuscenes-devkit).

    One sample per keyframe t that has the requested history and a next keyframe: the
    current frame (6 cameras, LiDAR, cues), ``history`` earlier keyframes, the next keyframe
    and an auxiliary earlier camera frame (keyframe or sweep) drawn by ego distance.

    Frames are expressed in the ego frame of the keyframe's LIDAR_TOP sample (of CAM_FRONT for
    sweeps): each camera's own ego pose at its exposure time is folded into its ``cam_to_ego``,
    so projecting ego-frame points through ``cam_to_ego`` is exact even while the car moves.

    Args:
        root: the nuScenes data root (holds ``<version>/``, ``samples/``, ``sweeps/``).
        split: an official split name of ``nuscenes.utils.splits.create_splits_scenes()``
            ("train", "val", "mini_train", "mini_val", ...; split scenes absent from this
            version are counted in ``summary.scenes_missing``), or an explicit list of scene names
            (all must exist).
        config: :class:`~occflow_data.SequenceConfig`; ``occ_root`` enables Occ3D ground truth.
        version: the version folder, e.g. "v1.0-mini" or "v1.0-trainval".
        cameras: camera channels, in the order of the N axis.
        verbose: print the summary when built.

    Raises:
        FileNotFoundError: the root, version folder, a table, or a scene's first files are missing.
        ValueError: unknown split or scene names, a scene too short for the history, bad calibration.

    >>> ds = NuScenesSequences("/data/nuscenes", "mini_train", SequenceConfig(occ_root="/data/occ3d"))
    ... # doctest: +SKIP
    >>> sample = ds[0]; sample.current.images.shape  # doctest: +SKIP
    torch.Size([6, 3, 512, 1408])
    """

    dataset_name = "nuscenes"
    lidar_dims = 5

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[str],
        config: SequenceConfig | None = None,
        *,
        version: str = "v1.0-trainval",
        cameras: Sequence[str] = NUSCENES_CAMERAS,
        verbose: bool = True,
    ) -> None:
        config = SequenceConfig() if config is None else config
        super().__init__(config, split if isinstance(split, str) else f"{len(split)} scenes", verbose)
        self.root = Path(root)
        self.version = version
        self._cameras = tuple(cameras)
        if not self._cameras or len(set(self._cameras)) != len(self._cameras):
            raise ValueError(f"cameras must be distinct camera channels, got {cameras!r}")
        self._check_layout()
        self.occ_root = None if config.occ_root is None else Path(config.occ_root)
        if self.occ_root is not None and not (self.occ_root / "gts").is_dir():
            raise FileNotFoundError(
                f"Occ3D ground truth folder not found: {self.occ_root / 'gts'}; expected "
                "<occ_root>/gts/<scene_name>/<sample_token>/labels.npz"
            )
        nusc = self._open_devkit()
        scene_names = self._resolve_split(nusc, split)
        by_name = {s["name"]: s for s in nusc.scene}
        for name in scene_names:
            self._scenes.append(self._read_scene(nusc, by_name[name]))
        self._build_index()

    # ------------------------------------------------------------ setup
    def _check_layout(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"nuScenes root not found: {self.root}")
        table_root = self.root / self.version
        if not table_root.is_dir():
            found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith("v1.0"))
            raise FileNotFoundError(
                f"nuScenes version folder not found: {table_root}; expected <root>/{self.version}/ with the "
                f"13 JSON tables. Version folders present: {found or 'none'} (pass version=...)"
            )
        missing = [t for t in _TABLES if not (table_root / f"{t}.json").is_file()]
        if missing:
            raise FileNotFoundError(
                f"nuScenes tables missing in {table_root}: {', '.join(m + '.json' for m in missing)}"
                "; nuscenes-devkit needs all 13 tables (they may be empty lists)"
            )
        with open(table_root / "map.json") as f:
            maps = json.load(f)
        with open(table_root / "log.json") as f:
            logs = json.load(f)
        for m in maps:
            map_file = self.root / m.get("filename", "")
            if not map_file.is_file():
                raise FileNotFoundError(
                    f"{table_root / 'map.json'}: map image {map_file} not found; nuscenes-devkit opens "
                    "every map record's file (maps/ folder)")
        covered = {t for m in maps for t in m.get("log_tokens", [])}
        orphan = [log["token"] for log in logs if log["token"] not in covered]
        if orphan:
            raise ValueError(
                f"{table_root / 'map.json'}: logs {orphan[:3]}{'...' if len(orphan) > 3 else ''} are "
                "in no map record's log_tokens; nuscenes-devkit needs every log covered by a map"
            )

    def _open_devkit(self):
        from nuscenes.nuscenes import NuScenes

        with contextlib.redirect_stdout(io.StringIO()):
            return NuScenes(version=self.version, dataroot=str(self.root), verbose=False)

    def _resolve_split(self, nusc, split) -> list[str]:
        present = [s["name"] for s in nusc.scene]
        if isinstance(split, str):
            from nuscenes.utils.splits import create_splits_scenes

            splits = create_splits_scenes()
            if split not in splits:
                raise ValueError(
                    f"unknown nuScenes split {split!r}; expected one of {sorted(splits)} or a list "
                    "of scene names"
                )
            wanted = splits[split]
            names = [n for n in wanted if n in set(present)]
            self.summary.scenes_missing = [n for n in wanted if n not in set(present)]
            if not names:
                raise ValueError(
                    f"none of the {len(wanted)} scenes of split {split!r} is in {self.root / self.version} "
                    f"(scenes there: {present[:5]}{'...' if len(present) > 5 else ''}); is the "
                    "version right (mini splits need v1.0-mini or v1.0-trainval)?"
                )
            return names
        names = check_split_names(split, "scene")
        unknown = [n for n in names if n not in set(present)]
        if unknown:
            raise ValueError(
                f"scenes {unknown} are not in {self.root / self.version}; expected names like {present[:3]}"
            )
        return names

    def _read_scene(self, nusc, scene: dict) -> _Scene:
        name = scene["name"]
        # Keyframes in order.
        samples = []
        token = scene["first_sample_token"]
        while token:
            rec = nusc.get("sample", token)
            samples.append(rec)
            token = rec["next"]
        missing_cams = [c for c in (*self._cameras, "LIDAR_TOP") if c not in samples[0]["data"]]
        if missing_cams:
            raise ValueError(
                f"scene {name}: sample {samples[0]['token']} has no sample_data for {missing_cams}; "
                f"channels present: {sorted(samples[0]['data'])}"
            )
        # Every camera sample_data of the scene, per channel, in time order.
        chains: dict[str, list[dict]] = {}
        for cam in self._cameras:
            sd = nusc.get("sample_data", samples[0]["data"][cam])
            while sd["prev"]:
                sd = nusc.get("sample_data", sd["prev"])
            chain = []
            while True:
                chain.append(sd)
                if not sd["next"]:
                    break
                sd = nusc.get("sample_data", sd["next"])
            chains[cam] = chain
        times = {c: np.array([sd["timestamp"] for sd in chain]) for c, chain in chains.items()}
        cache: dict[str, np.ndarray] = {}

        def ego_pose(sd: dict) -> np.ndarray:
            key = sd["ego_pose_token"]
            if key not in cache:
                cache[key] = _pose(nusc.get("ego_pose", key), f"ego_pose {key} ({self.root / self.version})")
            return cache[key]

        def camera(sd: dict, ref_inv: np.ndarray) -> tuple[np.ndarray, np.ndarray, Path]:
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            where = f"calibrated_sensor {cs['token']} ({sd['channel']}, {self.root / self.version})"
            k = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
            if k.shape != (3, 3) or not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
                raise ValueError(
                    f"inconsistent calibration in {where}: camera_intrinsic must be a 3x3 matrix "
                    f"with positive focal lengths, got {cs['camera_intrinsic']!r}"
                )
            cam_to_ego = ref_inv @ ego_pose(sd) @ _pose(cs, where)
            return k, cam_to_ego, self.root / sd["filename"]

        frames: list[FrameInfo] = []
        keyframes: list[int] = []
        anchor = self._cameras[0]
        key_sd = {s["data"][anchor]: s for s in samples}
        for sd_anchor in chains[anchor]:
            sample = key_sd.get(sd_anchor["token"])
            if sample is not None:
                lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
                ref = ego_pose(lidar_sd)
                cam_sds = [nusc.get("sample_data", sample["data"][c]) for c in self._cameras]
                lidar_cs = nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"])
                lidar_to_ego = (
                    rigid_inverse(ref)
                    @ ego_pose(lidar_sd)
                    @ _pose(lidar_cs, f"calibrated_sensor {lidar_cs['token']} (LIDAR_TOP)")
                )
                lidar_path = self.root / lidar_sd["filename"]
                timestamp = sample["timestamp"] * 1e-6
                key = sample["token"]
                gt_path = None if self.occ_root is None else self.occ_root / "gts" / name / key / "labels.npz"
            else:
                if (
                    sd_anchor["timestamp"] < samples[0]["timestamp"] - 1e5
                    or sd_anchor["timestamp"] > samples[-1]["timestamp"] + 1e5
                ):
                    continue  # sweeps recorded before the first / after the last keyframe
                ref = ego_pose(sd_anchor)
                cam_sds = []
                for c in self._cameras:
                    j = int(np.argmin(np.abs(times[c] - sd_anchor["timestamp"])))
                    cam_sds.append(chains[c][j])
                lidar_to_ego = lidar_path = gt_path = None
                timestamp = sd_anchor["timestamp"] * 1e-6
                key = sd_anchor["token"]
            ref_inv = rigid_inverse(ref)
            cams = [camera(sd, ref_inv) for sd in cam_sds]
            if sample is not None:
                keyframes.append(len(frames))
            frames.append(
                FrameInfo(
                    key=key,
                    scene=name,
                    index=len(frames),
                    timestamp=timestamp,
                    ego_to_global=ref,
                    image_paths=tuple(c[2] for c in cams),
                    intrinsics=np.stack([c[0] for c in cams]),
                    cam_to_ego=np.stack([c[1] for c in cams]),
                    lidar_path=lidar_path,
                    lidar_to_ego=lidar_to_ego,
                    is_keyframe=sample is not None,
                    gt_path=gt_path,
                )
            )
        if len(keyframes) != len(samples):
            raise ValueError(
                f"scene {name}: found {len(keyframes)} keyframes on the {anchor} chain but the scene "
                f"has {len(samples)} samples; the sample_data prev/next links are inconsistent"
            )
        first = frames[keyframes[0]]
        for path in (*first.image_paths, first.lidar_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"scene {name}: file not found: {path}; expected the nuScenes "
                    f"samples/ and sweeps/ folders under {self.root}"
                )
        if first.gt_path is not None and not first.gt_path.is_file():
            raise FileNotFoundError(
                f"scene {name}: Occ3D ground truth not found: {first.gt_path}; expected "
                "<occ_root>/gts/<scene_name>/<sample_token>/labels.npz"
            )
        return _Scene(name=name, frames=frames, keyframes=keyframes)

    # ------------------------------------------------------------ ground truth
    def _has_gt(self) -> bool:
        return self.occ_root is not None

    def load_gt(self, info: FrameInfo) -> GroundTruth:
        """Occ3D-nuScenes (and OpenOcc flow) ground truth of a keyframe."""
        if info.gt_path is None:
            raise ValueError(
                f"frame {info.key} of {info.scene} has no ground truth (set SequenceConfig.occ_root)"
            )
        return load_occ3d(info.gt_path)


def load_occ3d(path: str | Path, grid: GridSpec = OCC3D_NUSCENES) -> GroundTruth:
    """Read one Occ3D ``labels.npz`` (``semantics``, ``mask_lidar``, ``mask_camera``, optional ``flow``).

    Args:
        path: the ``labels.npz`` file.
        grid: its voxel grid (Occ3D-nuScenes: 200 x 200 x 16 at 0.4 m).

    Returns:
        The :class:`~occflow_data.GroundTruth` (flow in m/s when the file has it, else None).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Occ3D ground truth not found: {path}; expected "
            "<occ_root>/gts/<scene_name>/<sample_token>/labels.npz"
        )
    with np.load(path) as data:
        missing = [k for k in ("semantics", "mask_lidar", "mask_camera") if k not in data.files]
        if missing:
            raise ValueError(
                f"{path}: arrays {missing} missing; expected semantics, mask_lidar, mask_camera "
                f"(found {data.files})"
            )
        arrays = {k: data[k] for k in data.files}
    shape = tuple(grid.cells)
    for k in ("semantics", "mask_lidar", "mask_camera"):
        if arrays[k].shape != shape:
            raise ValueError(f"{path}: {k} has shape {arrays[k].shape}, expected {shape}")
    flow = None
    if "flow" in arrays:
        if arrays["flow"].shape != (*shape, 2):
            raise ValueError(f"{path}: flow has shape {arrays['flow'].shape}, expected {(*shape, 2)}")
        flow = torch.from_numpy(arrays["flow"].astype(np.float32))
    sem = arrays["semantics"]
    if sem.dtype != np.uint8:
        if sem.min() < 0 or sem.max() > 255:
            raise ValueError(f"{path}: semantics must hold labels 0..17, got range {sem.min()}..{sem.max()}")
        sem = sem.astype(np.uint8)
    try:
        return GroundTruth(
            occupancy=torch.from_numpy(sem),
            mask_camera=torch.from_numpy(arrays["mask_camera"] != 0),
            mask_lidar=torch.from_numpy(arrays["mask_lidar"] != 0),
            grid=grid,
            flow=flow,
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
