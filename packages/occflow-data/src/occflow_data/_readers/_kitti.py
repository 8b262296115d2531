"""KITTI readers: odometry + SemanticKITTI voxels, and the tracking benchmark (oxts poses).

Ego frame: the Velodyne frame (x forward, y left, z up), like SemanticKITTI's voxel grid.
Cameras are the rectified colour cameras (image_2 / image_02 left, image_3 / image_03 right).

SemanticKITTI / KITTI odometry (``<root>`` = the ``dataset`` folder of the odometry download)::

    <root>/sequences/<SS>/image_2/<NNNNNN>.png     left colour camera
                         image_3/<NNNNNN>.png     right colour camera (optional)
                         velodyne/<NNNNNN>.bin    float32 x, y, z, reflectance (Velodyne frame)
                         voxels/<NNNNNN>.label    uint16 raw SemanticKITTI ids, 256x256x32 (ground truth)
                         voxels/<NNNNNN>.invalid  bit-packed, voxels never observed (ignored)
                         voxels/<NNNNNN>.occluded bit-packed, voxels occluded from the sensor
                         voxels/<NNNNNN>.bin      bit-packed single-scan input occupancy (not used)
                         calib.txt                P0..P3 (3x4), Tr (3x4, Velodyne -> rectified cam 0)
                         times.txt                one timestamp (s) per frame
                         poses.txt                3x4 cam-0 pose per frame (odometry ground truth or SuMa)

KITTI tracking (``<root>`` holds ``training/``)::

    <root>/training/image_02/<SSSS>/<NNNNNN>.png   left colour camera
                    image_03/<SSSS>/<NNNNNN>.png   right colour camera (stereo pair)
                    velodyne/<SSSS>/<NNNNNN>.bin
                    calib/<SSSS>.txt               P0..P3, R_rect, Tr_velo_cam, Tr_imu_velo
                    oxts/<SSSS>.txt                one GPS/IMU line per frame (30 values)
                    label_02/<SSSS>.txt            tracklets (optional)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from volrender import SEMANTIC_KITTI, GridSpec

from .._geometry import rigid_inverse
from .._preprocess import IMAGE_KITTI, project_points
from .._schema import GroundTruth
from ._base import FrameInfo, SequenceConfig, SequenceDataset, _Scene, check_split_names

#: SemanticKITTI's official sequence splits.
SEMANTIC_KITTI_SPLITS = {
    "train": [f"{i:02d}" for i in (0, 1, 2, 3, 4, 5, 6, 7, 9, 10)],
    "val": ["08"],
    "test": [f"{i:02d}" for i in range(11, 22)],
    "all": [f"{i:02d}" for i in range(22)],
}

#: Raw SemanticKITTI label id -> Occ3D-nuScenes label (17 = free). Unlabeled (0) and outlier (1)
#: voxels count as free, as in SemanticKITTI's scene-completion benchmark; ids not listed -> 0 (others).
SEMANTIC_KITTI_TO_OCC3D = {
    0: 17,
    1: 17,
    10: 4,
    252: 4,  # car
    11: 2,
    31: 2,
    253: 2,  # bicycle, bicyclist
    13: 3,
    257: 3,  # bus
    15: 6,
    32: 6,
    255: 6,  # motorcycle, motorcyclist
    16: 0,
    256: 0,
    20: 0,
    259: 0,  # on-rails, other-vehicle
    18: 10,
    258: 10,  # truck
    30: 7,
    254: 7,  # person
    40: 11,
    60: 11,  # road, lane marking
    44: 12,
    49: 12,  # parking, other-ground
    48: 13,  # sidewalk
    50: 15,
    52: 15,
    80: 15,
    81: 15,  # building, other-structure, pole, traffic-sign
    51: 1,  # fence
    70: 16,
    71: 16,  # vegetation, trunk
    72: 14,  # terrain
    99: 0,  # other-object
}
_LUT = np.zeros(1 << 16, dtype=np.uint8)
for _raw, _occ in SEMANTIC_KITTI_TO_OCC3D.items():
    _LUT[_raw] = _occ


# --------------------------------------------------------------------------- file parsing
def read_kitti_calib(path: Path) -> dict[str, np.ndarray]:
    """Parse a KITTI calibration file (``KEY: v v v ...`` or ``KEY v v v ...`` lines) into flat arrays."""
    if not path.is_file():
        raise FileNotFoundError(f"KITTI calibration file not found: {path}")
    out: dict[str, np.ndarray] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.replace(":", " ").split()
        if not parts:
            continue
        try:
            out[parts[0]] = np.array([float(v) for v in parts[1:]], dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"{path}:{n}: expected '<key>: <numbers>', got {line!r}") from err
    return out


def _matrix(calib: dict[str, np.ndarray], key: str, shape: tuple[int, int], path: Path) -> np.ndarray:
    if key not in calib:
        raise ValueError(f"{path}: no {key} entry; found {sorted(calib)}")
    value = calib[key]
    if value.size != shape[0] * shape[1]:
        raise ValueError(
            f"inconsistent calibration in {path}: {key} has {value.size} values, expected "
            f"{shape[0] * shape[1]} ({shape[0]}x{shape[1]})"
        )
    return value.reshape(shape)


def _homogeneous(m34: np.ndarray, path: Path, key: str) -> np.ndarray:
    out = np.eye(4)
    out[:3] = m34
    rot = out[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3):
        raise ValueError(
            f"inconsistent calibration in {path}: {key} is not a rigid transform (rotation block "
            "not orthonormal)"
        )
    return out


def camera_from_projection(p: np.ndarray, path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Split a rectified 3x4 projection ``P = K [I | t]`` into ``K`` and ``t`` (cam-0 -> this camera)."""
    k = p[:, :3].copy()
    if not (
        k[0, 0] > 0
        and k[1, 1] > 0
        and abs(k[1, 0]) < 1e-9
        and abs(k[2, 0]) < 1e-9
        and abs(k[2, 1]) < 1e-9
        and abs(k[2, 2] - 1) < 1e-6
    ):
        raise ValueError(
            f"inconsistent calibration in {path}: {key}[:, :3] must be an upper-triangular "
            f"intrinsics matrix with positive focal lengths, got {k.tolist()}"
        )
    return k, np.linalg.solve(k, p[:, 3])


def oxts_poses(oxts: np.ndarray) -> np.ndarray:
    """GPS/IMU poses from KITTI oxts rows (the KITTI devkit's Mercator convention).

    The scale of the Mercator projection is taken at the first latitude; the translation is
    (scale * R * lon, scale * R * log(tan((90 + lat) / 2)), alt) with R = 6378137 m, the rotation
    Rz(yaw) Ry(pitch) Rx(roll); poses are relative to the first one (first = identity).

    Args:
        oxts: ``[T, >= 6]`` rows (lat, lon in degrees, alt in m, roll, pitch, yaw in rad, ...).

    Returns:
        ``[T, 4, 4]`` float64 IMU-to-world poses.
    """
    oxts = np.asarray(oxts, dtype=np.float64)
    if oxts.ndim != 2 or oxts.shape[1] < 6 or len(oxts) == 0:
        raise ValueError(f"oxts must be [T, >= 6] rows, got shape {oxts.shape}")
    earth = 6378137.0
    lat, lon, alt, roll, pitch, yaw = (oxts[:, i] for i in range(6))
    scale = np.cos(np.deg2rad(lat[0]))
    t = np.stack(
        [scale * earth * np.deg2rad(lon), scale * earth * np.log(np.tan(np.deg2rad(90.0 + lat) / 2.0)), alt],
        axis=1,
    )
    cr, sr, cp, sp, cy, sy = (
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
    )
    poses = np.tile(np.eye(4), (len(oxts), 1, 1))
    poses[:, 0, 0] = cy * cp
    poses[:, 0, 1] = cy * sp * sr - sy * cr
    poses[:, 0, 2] = cy * sp * cr + sy * sr
    poses[:, 1, 0] = sy * cp
    poses[:, 1, 1] = sy * sp * sr + cy * cr
    poses[:, 1, 2] = sy * sp * cr - cy * sr
    poses[:, 2, 0] = -sp
    poses[:, 2, 1] = cp * sr
    poses[:, 2, 2] = cp * cr
    poses[:, :3, 3] = t
    return rigid_inverse(poses[0])[None] @ poses


def _read_rows(path: Path, width: int, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"KITTI {what} file not found: {path}")
    try:
        data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path}: could not parse {what}: {err}") from err
    if data.size == 0 or data.shape[1] < width:
        raise ValueError(f"{path}: expected {what} rows of at least {width} numbers, got shape {data.shape}")
    return data


def _frames_in(folder: Path, ext: str, what: str) -> list[int]:
    if not folder.is_dir():
        raise FileNotFoundError(f"KITTI {what} folder not found: {folder}")
    ids = sorted(int(p.stem) for p in folder.glob(f"*{ext}") if p.stem.isdigit())
    if not ids:
        raise FileNotFoundError(f"no {ext} files in {folder} ({what}); expected <NNNNNN>{ext}")
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise ValueError(
            f"{folder}: frame numbers are not consecutive ({len(ids)} files from {ids[0]:06d} to "
            f"{ids[-1]:06d})"
        )
    return ids


def _unpack_bits(path: Path, count: int) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size * 8 != count:
        raise ValueError(f"{path}: {raw.size} bytes, expected {count // 8} (bit-packed {count} voxels)")
    return np.unpackbits(raw).astype(bool)


# --------------------------------------------------------------------------- shared reader
class _KittiBase(SequenceDataset):
    lidar_dims = 4

    def _camera_rig(
        self, calib: dict[str, np.ndarray], path: Path, proj_keys: Sequence[str], velo_to_rect: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Intrinsics [N, 3, 3] and cam_to_ego [N, 4, 4] (ego = Velodyne) of the chosen cameras."""
        rect_to_velo = rigid_inverse(velo_to_rect)
        ks, c2e = [], []
        for key in proj_keys:
            k, t = camera_from_projection(_matrix(calib, key, (3, 4), path), path, key)
            cam0_from_cam = np.eye(4)
            cam0_from_cam[:3, 3] = -t
            ks.append(k)
            c2e.append(rect_to_velo @ cam0_from_cam)
        if len(ks) > 1 and not np.allclose(ks[0], ks[1], atol=1e-3 * ks[0][0, 0]):
            raise ValueError(
                f"inconsistent calibration in {path}: {proj_keys[0]} and {proj_keys[1]} have different "
                "intrinsics; expected a rectified stereo pair"
            )
        return np.stack(ks), np.stack(c2e)

    def _sequence(
        self,
        name: str,
        image_dirs: Sequence[Path],
        velodyne: Path | None,
        ks: np.ndarray,
        c2e: np.ndarray,
        poses: np.ndarray,
        times: np.ndarray,
        key_prefix: str,
        gt_dir: Path | None = None,
    ) -> _Scene:
        ids = _frames_in(image_dirs[0], ".png", f"{image_dirs[0].name} images of sequence {name}")
        for other in image_dirs[1:]:
            ids2 = _frames_in(other, ".png", f"{other.name} images of sequence {name}")
            if ids2 != ids:
                raise ValueError(
                    f"sequence {name}: {other} has {len(ids2)} images but {image_dirs[0]} has "
                    f"{len(ids)}; expected one image per frame in each camera folder"
                )
        if len(poses) != len(ids):
            raise ValueError(
                f"sequence {name}: {len(poses)} poses for {len(ids)} images in {image_dirs[0]}; "
                "expected one pose per frame"
            )
        if len(times) != len(ids):
            raise ValueError(
                f"sequence {name}: {len(times)} timestamps for {len(ids)} images in {image_dirs[0]}; "
                "expected one timestamp per frame"
            )
        if velodyne is not None and self.config.load_lidar:
            scan = velodyne / f"{ids[0]:06d}.bin"
            if not scan.is_file():
                raise FileNotFoundError(f"sequence {name}: LiDAR scan not found: {scan}")
        frames = []
        for pos, frame_id in enumerate(ids):
            frames.append(
                FrameInfo(
                    key=f"{key_prefix}_{frame_id:06d}",
                    scene=name,
                    index=pos,
                    timestamp=float(times[pos]),
                    ego_to_global=poses[pos],
                    image_paths=tuple(d / f"{frame_id:06d}.png" for d in image_dirs),
                    intrinsics=ks,
                    cam_to_ego=c2e,
                    lidar_path=None if velodyne is None else velodyne / f"{frame_id:06d}.bin",
                    lidar_to_ego=None if velodyne is None else np.eye(4),
                    gt_path=None if gt_dir is None else gt_dir / f"{frame_id:06d}",
                )
            )
        return _Scene(name=name, frames=frames, keyframes=list(range(len(frames))))


class SemanticKittiSequences(_KittiBase):
    """KITTI odometry sequences with SemanticKITTI voxel ground truth, as a Dataset of Sample.

    Every frame is a keyframe (10 Hz). Ego frame = Velodyne; ``ego_to_global`` comes from
    ``poses.txt`` (cam-0 poses) as ``inv(Tr) @ pose @ Tr`` (world = the first Velodyne frame).
    Ground truth (``config.load_gt``) maps the raw SemanticKITTI ids of ``voxels/*.label`` to
    Occ3D labels (:data:`SEMANTIC_KITTI_TO_OCC3D`, 17 = free) on :data:`volrender.SEMANTIC_KITTI`;
    ``mask_lidar`` = not ``.invalid``; ``mask_camera`` = not invalid, not ``.occluded`` and inside
    the first camera's view. Real SemanticKITTI labels only every 5th frame: the others are
    skipped and counted in ``summary.skipped_no_gt``.

    Args:
        root: the odometry ``dataset`` folder (holds ``sequences/``).
        split: "train" (00-07, 09, 10), "val" (08), "test" (11-21), "all", or a list of
            sequence names ("00", "08", ...).
        config: :class:`~occflow_data.SequenceConfig` (default: KITTI resolutions).
        cameras: "image_2" and/or "image_3".
        verbose: print the summary when built.

    >>> cfg = SequenceConfig(image=IMAGE_KITTI, load_gt=True)
    >>> ds = SemanticKittiSequences("/data/kitti/dataset", "val", cfg)  # doctest: +SKIP
    """

    dataset_name = "semantic_kitti"

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[str],
        config: SequenceConfig | None = None,
        *,
        cameras: Sequence[str] = ("image_2",),
        grid: GridSpec = SEMANTIC_KITTI,
        verbose: bool = True,
    ) -> None:
        config = SequenceConfig(image=IMAGE_KITTI) if config is None else config
        super().__init__(config, split if isinstance(split, str) else f"{len(split)} sequences", verbose)
        self.root = Path(root)
        self.grid = grid
        self._cameras = tuple(cameras)
        proj = {"image_2": "P2", "image_3": "P3"}
        if (
            not self._cameras
            or any(c not in proj for c in self._cameras)
            or len(set(self._cameras)) != len(cameras)
        ):
            raise ValueError(f"cameras must be distinct names among {sorted(proj)}, got {cameras!r}")
        seq_root = self.root / "sequences"
        if not seq_root.is_dir():
            raise FileNotFoundError(
                f"KITTI odometry folder not found: {seq_root}; expected <root>/sequences/<SS>/"
            )
        present = sorted(p.name for p in seq_root.iterdir() if p.is_dir())
        if isinstance(split, str):
            if split not in SEMANTIC_KITTI_SPLITS:
                raise ValueError(
                    f"unknown SemanticKITTI split {split!r}; expected one of "
                    f"{sorted(SEMANTIC_KITTI_SPLITS)} or a list of sequence names"
                )
            wanted = SEMANTIC_KITTI_SPLITS[split]
            names = [n for n in wanted if n in present]
            self.summary.scenes_missing = [n for n in wanted if n not in present]
            if not names:
                raise ValueError(
                    f"none of the sequences of split {split!r} ({wanted}) is in {seq_root} (found {present})"
                )
        else:
            names = check_split_names(split, "sequence")
            unknown = [n for n in names if n not in present]
            if unknown:
                raise FileNotFoundError(f"sequences {unknown} not found in {seq_root} (found {present})")
        for name in names:
            folder = seq_root / name
            calib_path = folder / "calib.txt"
            calib = read_kitti_calib(calib_path)
            tr = _homogeneous(_matrix(calib, "Tr", (3, 4), calib_path), calib_path, "Tr")
            ks, c2e = self._camera_rig(calib, calib_path, [proj[c] for c in self._cameras], tr)
            cam_poses = _read_rows(folder / "poses.txt", 12, "poses")[:, :12].reshape(-1, 3, 4)
            poses = np.tile(np.eye(4), (len(cam_poses), 1, 1))
            poses[:, :3] = cam_poses
            poses = rigid_inverse(tr)[None] @ poses @ tr[None]
            times = _read_rows(folder / "times.txt", 1, "timestamps")[:, 0]
            gt_dir = folder / "voxels" if config.load_gt else None
            if gt_dir is not None and not gt_dir.is_dir():
                raise FileNotFoundError(f"sequence {name}: voxel ground truth folder not found: {gt_dir}")
            self._scenes.append(
                self._sequence(
                    name,
                    [folder / c for c in self._cameras],
                    folder / "velodyne",
                    ks,
                    c2e,
                    poses,
                    times,
                    name,
                    gt_dir,
                )
            )
        self._build_index(keep=(lambda f: Path(f"{f.gt_path}.label").is_file()) if config.load_gt else None)

    def _has_gt(self) -> bool:
        return self.config.load_gt

    def _in_view(self, info: FrameInfo) -> np.ndarray:
        """[X, Y, Z] bool: voxel centres inside the first camera's image (cached per calibration)."""
        with Image.open(info.image_paths[0]) as im:
            width, height = im.size
        key = (info.intrinsics[0].tobytes(), info.cam_to_ego[0].tobytes(), width, height)
        cache = self.__dict__.setdefault("_view_cache", {})
        if key not in cache:
            centres = self.grid.points("cell", dtype=torch.float64).reshape(-1, 3)
            uv, depth = project_points(centres, torch.from_numpy(info.intrinsics[:1]),
                                       torch.from_numpy(info.cam_to_ego[:1]))
            inside = ((depth[0] > 0) & (uv[0, :, 0] >= -0.5) & (uv[0, :, 0] < width - 0.5)
                      & (uv[0, :, 1] >= -0.5) & (uv[0, :, 1] < height - 0.5))
            cache.clear()  # one calibration at a time is enough (sequences are read in order)
            cache[key] = inside.reshape(tuple(self.grid.cells)).numpy()
        return cache[key]

    def load_gt(self, info: FrameInfo) -> GroundTruth:
        """SemanticKITTI voxel ground truth of a frame (labels mapped to Occ3D classes)."""
        if info.gt_path is None:
            raise ValueError(f"frame {info.key}: ground truth not configured (SequenceConfig.load_gt)")
        shape = tuple(self.grid.cells)
        count = int(np.prod(shape))
        label_path = Path(f"{info.gt_path}.label")
        if not label_path.is_file():
            raise FileNotFoundError(f"SemanticKITTI voxel labels not found: {label_path}")
        labels = np.fromfile(label_path, dtype=np.uint16)
        if labels.size != count:
            raise ValueError(f"{label_path}: {labels.size} uint16 labels, expected {count} ({shape})")
        invalid_path = Path(f"{info.gt_path}.invalid")
        if not invalid_path.is_file():
            raise FileNotFoundError(f"SemanticKITTI invalid mask not found: {invalid_path}")
        invalid = _unpack_bits(invalid_path, count).reshape(shape)
        occluded_path = Path(f"{info.gt_path}.occluded")
        occluded = (
            _unpack_bits(occluded_path, count).reshape(shape)
            if occluded_path.is_file()
            else np.zeros(shape, dtype=bool)
        )
        occupancy = _LUT[labels].reshape(shape)
        in_view = self._in_view(info)
        return GroundTruth(
            occupancy=torch.from_numpy(occupancy),
            mask_camera=torch.from_numpy(~invalid & ~occluded & in_view),
            mask_lidar=torch.from_numpy(~invalid),
            grid=self.grid,
        )


class KittiTrackingSequences(_KittiBase):
    """The KITTI tracking benchmark (training part) as a Dataset of Sample.

    Every frame is a keyframe (10 Hz; the tracking data has no timestamps, so timestamp =
    frame / 10 s). Poses come from ``oxts/<SSSS>.txt`` (:func:`oxts_poses`, world = first IMU
    frame): ``ego_to_global = imu_to_world @ inv(Tr_imu_velo)``. Cameras: "image_02" (left)
    and/or "image_03" (right; use both for the stereo pair: the baseline is the distance
    between their ``cam_to_ego`` translations). ``meta["objects"]`` lists the ``label_02``
    tracklets of the current frame (type, track_id, bbox, dimensions h w l, location in the
    rectified camera-0 frame, rotation_y) when the label file exists.

    Args:
        root: the folder holding ``training/``.
        split: "all" (every sequence found) or a list of sequence names ("0000", ...).
        config: :class:`~occflow_data.SequenceConfig` (default: KITTI resolutions).
        cameras: camera folders, in the order of the N axis.
        verbose: print the summary when built.
    """

    dataset_name = "kitti_tracking"

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[str] = "all",
        config: SequenceConfig | None = None,
        *,
        cameras: Sequence[str] = ("image_02",),
        verbose: bool = True,
    ) -> None:
        config = SequenceConfig(image=IMAGE_KITTI) if config is None else config
        super().__init__(config, split if isinstance(split, str) else f"{len(split)} sequences", verbose)
        self.root = Path(root)
        self._cameras = tuple(cameras)
        proj = {"image_02": "P2", "image_03": "P3"}
        if (
            not self._cameras
            or any(c not in proj for c in self._cameras)
            or len(set(self._cameras)) != len(cameras)
        ):
            raise ValueError(f"cameras must be distinct names among {sorted(proj)}, got {cameras!r}")
        base = self.root / "training"
        if not (base / self._cameras[0]).is_dir():
            raise FileNotFoundError(
                f"KITTI tracking folder not found: {base / self._cameras[0]}; expected "
                "<root>/training/image_02/<SSSS>/"
            )
        present = sorted(p.name for p in (base / self._cameras[0]).iterdir() if p.is_dir())
        if isinstance(split, str):
            if split != "all":
                raise ValueError(
                    f"unknown KITTI tracking split {split!r}; expected 'all' or a list of sequence names"
                )
            names = present
            if not names:
                raise FileNotFoundError(f"no sequences in {base / self._cameras[0]}")
        else:
            names = check_split_names(split, "sequence")
            unknown = [n for n in names if n not in present]
            if unknown:
                raise FileNotFoundError(
                    f"sequences {unknown} not found in {base / self._cameras[0]} (found {present})"
                )
        self._objects: dict[str, dict[int, list[dict]]] = {}
        for name in names:
            calib_path = base / "calib" / f"{name}.txt"
            calib = read_kitti_calib(calib_path)
            r_rect = np.eye(4)
            r_rect[:3, :3] = _matrix(calib, "R_rect", (3, 3), calib_path)
            velo_to_cam = _homogeneous(
                _matrix(calib, "Tr_velo_cam", (3, 4), calib_path), calib_path, "Tr_velo_cam"
            )
            imu_to_velo = _homogeneous(
                _matrix(calib, "Tr_imu_velo", (3, 4), calib_path), calib_path, "Tr_imu_velo"
            )
            if not np.allclose(r_rect[:3, :3] @ r_rect[:3, :3].T, np.eye(3), atol=1e-3):
                raise ValueError(f"inconsistent calibration in {calib_path}: R_rect is not a rotation")
            ks, c2e = self._camera_rig(
                calib, calib_path, [proj[c] for c in self._cameras], r_rect @ velo_to_cam
            )
            oxts = _read_rows(base / "oxts" / f"{name}.txt", 6, "oxts")
            poses = oxts_poses(oxts) @ rigid_inverse(imu_to_velo)[None]
            times = np.arange(len(oxts), dtype=np.float64) * 0.1
            self._scenes.append(
                self._sequence(
                    name,
                    [base / c / name for c in self._cameras],
                    base / "velodyne" / name,
                    ks,
                    c2e,
                    poses,
                    times,
                    name,
                )
            )
            self._objects[name] = self._read_labels(base / "label_02" / f"{name}.txt")
        self._build_index()

    @staticmethod
    def _read_labels(path: Path) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {}
        if not path.is_file():
            return out
        for n, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 17:
                raise ValueError(
                    f"{path}:{n}: expected 17 fields (frame track_id type truncated occluded alpha "
                    f"bbox[4] dimensions[3] location[3] rotation_y), got {len(parts)}"
                )
            v = [float(x) for x in parts[6:17]]
            out.setdefault(int(parts[0]), []).append(
                {
                    "track_id": int(parts[1]),
                    "type": parts[2],
                    "truncated": float(parts[3]),
                    "occluded": int(float(parts[4])),
                    "alpha": float(parts[5]),
                    "bbox": v[0:4],
                    "dimensions": v[4:7],
                    "location": v[7:10],
                    "rotation_y": v[10],
                }
            )
        return out

    def __getitem__(self, index: int):
        sample = super().__getitem__(index)
        info = self.frame_info(index)
        frame_id = int(info.key.rsplit("_", 1)[1])
        sample.meta["objects"] = self._objects.get(info.scene, {}).get(frame_id, [])
        return sample
