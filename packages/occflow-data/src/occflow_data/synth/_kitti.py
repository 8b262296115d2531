"""Writers of the KITTI odometry (+ SemanticKITTI labels and voxels) and KITTI tracking layouts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from volrender import SEMANTIC_KITTI

from . import _classes as C
from ._geometry import apply, invert_pose, pose_matrix
from ._gt import annotation_boxes, lidar_visibility, voxelize
from ._io import save_image, token
from ._render import Renderer
from ._rigs import KITTI_BASELINE, KITTI_CAM0, KITTI_CAM2_OFFSET, KITTI_IMU, Rig, kitti_rig
from ._world import World, WorldConfig, make_world

FRAME_DT = 0.1  # 10 Hz
EARTH_RADIUS = 6378137.0
LAT0, LON0 = 49.0, 8.4  # where sequence origins are placed on the globe (Karlsruhe)


@dataclass(frozen=True)
class KittiConfig:
    """What the KITTI writers generate.

    Attributes:
        sequences: number of sequences (drives).
        frames: frames per sequence (10 Hz).
        seed: world seed; sequence i uses a seed derived from (seed, i).
        height, width: image size, pixels (KITTI: 376 x 1241; intrinsics are scaled).
        voxel_stride: odometry: SemanticKITTI voxel files for every ``voxel_stride``-th frame (KITTI: 5).
        lidar_azimuth_bins: rays per beam and revolution of the 64-beam LiDAR.
        world: world knobs.
    """

    sequences: int = 1
    frames: int = 20
    seed: int = 0
    height: int = 188
    width: int = 620
    voxel_stride: int = 5
    lidar_azimuth_bins: int = 1800
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.sequences, int) or not 1 <= self.sequences <= 100:
            raise ValueError(f"sequences must be an int in [1, 100], got {self.sequences!r}")
        if not isinstance(self.frames, int) or self.frames < 2:
            raise ValueError(f"frames must be an int >= 2, got {self.frames!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not isinstance(self.voxel_stride, int) or self.voxel_stride < 1:
            raise ValueError(f"voxel_stride must be an int >= 1, got {self.voxel_stride!r}")


def sequence_seed(seed: int, index: int) -> int:
    """The world seed of sequence ``index`` of a KITTI-layout dataset made with ``seed``."""
    return int(token("kitti-sequence", seed, index)[:8], 16)


def _cam0_to_ego() -> np.ndarray:
    from ._geometry import camera_rotation

    t = np.eye(4)
    t[:3, :3] = camera_rotation(0.0)
    t[:3, 3] = KITTI_CAM0
    return t


def calibration(rig: Rig) -> dict[str, np.ndarray]:
    """KITTI calibration of ``rig``: P0..P3 [3, 4] (rectified camera j projection of camera-0 points),
    Tr [3, 4] (velodyne -> camera 0), Tr_imu_velo [3, 4] (IMU -> velodyne)."""
    k = rig.cameras[0].intrinsics
    out = {}
    for j, bx in enumerate((0.0, KITTI_BASELINE, -KITTI_CAM2_OFFSET, KITTI_BASELINE - KITTI_CAM2_OFFSET)):
        p = np.zeros((3, 4))
        p[:, :3] = k
        p[:, 3] = -k @ np.array([bx, 0.0, 0.0])
        out[f"P{j}"] = p
    out["Tr"] = (invert_pose(_cam0_to_ego()) @ rig.lidar.sensor_to_ego)[:3]
    out["Tr_imu_velo"] = (invert_pose(rig.lidar.sensor_to_ego) @ pose_matrix(*KITTI_IMU, 0.0))[:3]
    return out


def _check_root(root, config) -> Path:
    if not isinstance(config, KittiConfig):
        raise TypeError(f"config must be a KittiConfig, got {type(config).__name__}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root must be an existing folder, got {root}")
    return root


def _fmt(values) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(values, np.float64).reshape(-1))


def _sequence(world_seed: int, cfg: KittiConfig, device: str):
    world = make_world(world_seed, cfg.frames * FRAME_DT + 0.5, cfg.world)
    return world, Renderer(world, device)


def write_kitti_odometry(root: Path, config: KittiConfig, device: str = "cpu", progress=None) -> dict:
    """Write KITTI odometry + SemanticKITTI sequences under ``root`` (an existing empty folder).

    Per sequence ``sequences/<SS>/``: ``image_2``, ``image_3`` (png), ``velodyne`` (float32 x, y, z,
    reflectance), ``labels`` (uint32 per point: semantic | instance << 16), ``voxels`` (every
    ``voxel_stride``-th frame: ``.bin``, ``.label``, ``.invalid``, ``.occluded``), ``calib.txt``,
    ``times.txt``, ``poses.txt`` (also ``poses/<SS>.txt``).

    Returns:
        A summary dict.
    """
    root = _check_root(root, config)
    rig = kitti_rig(config.height, config.width, config.lidar_azimuth_bins)
    calib = calibration(rig)
    (root / "poses").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    velo_to_ego = rig.lidar.sensor_to_ego
    for si in range(config.sequences):
        world, renderer = _sequence(sequence_seed(config.seed, si), config, device)
        seq = root / "sequences" / f"{si:02d}"
        for sub in ("image_2", "image_3", "velodyne", "labels", "voxels"):
            (seq / sub).mkdir(parents=True, exist_ok=True)
        (seq / "calib.txt").write_text(
            "".join(f"{k}: {_fmt(calib[k])}\n" for k in ("P0", "P1", "P2", "P3", "Tr"))
        )
        (seq / "times.txt").write_text("".join(f"{i * FRAME_DT:.6e}\n" for i in range(config.frames)))
        cam0 = _cam0_to_ego()
        first = world.ego_pose(0.0) @ cam0
        poses = [invert_pose(first) @ world.ego_pose(i * FRAME_DT) @ cam0 for i in range(config.frames)]
        text = "".join(_fmt(p[:3]) + "\n" for p in poses)
        (seq / "poses.txt").write_text(text)
        (root / "poses" / f"{si:02d}.txt").write_text(text)
        sweeps = []
        for i in range(config.frames):
            t = i * FRAME_DT
            frame = renderer.render_cameras(t, rig.cameras)
            save_image(seq / "image_2" / f"{i:06d}.png", frame.rgb[0])
            save_image(seq / "image_3" / f"{i:06d}.png", frame.rgb[1])
            sweep = renderer.render_lidar(t, rig.lidar)
            _write_velodyne(seq / "velodyne" / f"{i:06d}.bin", sweep)
            sem = _point_semkitti(world, sweep, t)
            label = sem.astype(np.uint32) | (sweep.instance.astype(np.uint32) << 16)
            (seq / "labels" / f"{i:06d}.label").write_bytes(label.astype(np.uint32).tobytes())
            sweeps.append(sweep)
            if progress is not None:
                progress(1)
        for i in range(0, config.frames, config.voxel_stride):
            _write_voxels(seq / "voxels", i, world, sweeps, rig, velo_to_ego, device)
    elapsed = time.perf_counter() - t_start
    n = config.sequences * config.frames
    return {"sequences": config.sequences, "frames": n, "seconds": elapsed, "seconds_per_frame": elapsed / n}


def _write_velodyne(path: Path, sweep) -> None:
    pts = np.concatenate([sweep.points, (sweep.intensity / 255.0)[:, None]], 1).astype(np.float32)
    path.write_bytes(pts.tobytes())


def _point_semkitti(world: World, sweep, t: float) -> np.ndarray:
    """SemanticKITTI raw label per LiDAR point (moving agents get the 25x 'moving-' ids)."""
    sem = C.FINE_TO_SEMKITTI[np.clip(sweep.fine, 0, C.NUM_FINE - 1)].copy()
    if world.agents:
        speed = np.linalg.norm(world.agent_states(t)[2], axis=1)
        for k, a in enumerate(world.agents):
            sel = sweep.agent == k
            if np.any(sel):
                table = C.FINE_TO_SEMKITTI_MOVING if speed[k] > 0.05 else C.FINE_TO_SEMKITTI
                sem[sel] = table[a.fine]
    return sem


def _write_voxels(folder: Path, i: int, world: World, sweeps, rig: Rig, velo_to_ego, device: str) -> None:
    """SemanticKITTI voxels of frame ``i`` (grid in the velodyne frame of frame ``i``)."""
    t = i * FRAME_DT
    velo_to_map = world.ego_pose(t) @ velo_to_ego
    occ = voxelize(world, t, velo_to_map, SEMANTIC_KITTI)
    labels = occ.semantic_kitti(world, t)
    occupied = occ.code >= 0
    seen_now = lidar_visibility([sweeps[i]], rig.lidar, SEMANTIC_KITTI, [np.eye(4)], device=device)
    later = [j for j in (i, i + 5, i + 10, i + 20) if j < len(sweeps)]
    f2s = [invert_pose(world.ego_pose(j * FRAME_DT) @ velo_to_ego) @ velo_to_map for j in later]
    seen_any = lidar_visibility([sweeps[j] for j in later], rig.lidar, SEMANTIC_KITTI, f2s, device=device)
    stem = folder / f"{i:06d}"
    Path(f"{stem}.bin").write_bytes(np.packbits(occupied.reshape(-1)).tobytes())
    Path(f"{stem}.label").write_bytes(labels.reshape(-1).astype(np.uint16).tobytes())
    Path(f"{stem}.invalid").write_bytes(np.packbits(~seen_any.reshape(-1)).tobytes())
    Path(f"{stem}.occluded").write_bytes(np.packbits(~seen_now.reshape(-1)).tobytes())


# ---------------------------------------------------------------------- tracking
KITTI_TYPES = {kind: v[2] for kind, v in C.AGENT_KINDS.items()}


def _oxts_lines(world: World, frames: int) -> list[str]:
    """OXTS records (30 values) of the IMU at each frame; global x = east, y = north."""
    g = world.global_from_map
    imu = pose_matrix(*KITTI_IMU, 0.0)
    poses = [g @ world.ego_pose(i * FRAME_DT) @ imu for i in range(frames)]
    scale = np.cos(np.deg2rad(LAT0))
    mx0 = scale * np.deg2rad(LON0) * EARTH_RADIUS
    my0 = scale * EARTH_RADIUS * np.log(np.tan(np.deg2rad(90.0 + LAT0) / 2))
    x0, y0 = poses[0][0, 3], poses[0][1, 3]
    lines = []
    for i, p in enumerate(poses):
        mx, my = mx0 + p[0, 3] - x0, my0 + p[1, 3] - y0
        lon = np.rad2deg(mx / (scale * EARTH_RADIUS))
        lat = np.rad2deg(2 * np.arctan(np.exp(my / (scale * EARTH_RADIUS)))) - 90.0
        yaw = float(np.arctan2(p[1, 0], p[0, 0]))
        v = g[:3, :3] @ world.ego_velocity(i * FRAME_DT)
        vf = float(np.cos(yaw) * v[0] + np.sin(yaw) * v[1])
        vl = float(-np.sin(yaw) * v[0] + np.cos(yaw) * v[1])
        dt = 0.05
        yaw_rate = (
            np.arctan2(*(world.ego_pose(i * FRAME_DT + dt)[[1, 0], 0]))
            - np.arctan2(*(world.ego_pose(i * FRAME_DT - dt)[[1, 0], 0]))
        ) / (2 * dt)
        vals = [
            lat,
            lon,
            p[2, 3],
            0.0,
            0.0,
            yaw,
            v[1],
            v[0],
            vf,
            vl,
            0.0,
            0.0,
            0.0,
            9.81,
            0.0,
            0.0,
            9.81,
            0.0,
            0.0,
            yaw_rate,
            0.0,
            0.0,
            yaw_rate,
            0.05,
            0.02,
            4,
            10,
            4,
            4,
            4,
        ]
        lines.append(" ".join(repr(float(x)) if j < 25 else str(int(x)) for j, x in enumerate(vals)))
    return lines


def write_kitti_tracking(root: Path, config: KittiConfig, device: str = "cpu", progress=None) -> dict:
    """Write KITTI tracking sequences under ``root/training`` (``root`` an existing empty folder).

    ``image_02``/``image_03/<SSSS>/<NNNNNN>.png``, ``velodyne/<SSSS>/<NNNNNN>.bin``,
    ``calib/<SSSS>.txt`` (P0..P3, R_rect, Tr_velo_cam, Tr_imu_velo), ``oxts/<SSSS>.txt``,
    ``label_02/<SSSS>.txt`` (objects seen in image_02).
    """
    root = _check_root(root, config) / "training"
    rig = kitti_rig(config.height, config.width, config.lidar_azimuth_bins)
    calib = calibration(rig)
    for sub in ("image_02", "image_03", "velodyne", "calib", "oxts", "label_02"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cam0 = _cam0_to_ego()
    for si in range(config.sequences):
        world, renderer = _sequence(sequence_seed(config.seed, si), config, device)
        name = f"{si:04d}"
        for sub in ("image_02", "image_03", "velodyne"):
            (root / sub / name).mkdir(exist_ok=True)
        (root / "calib" / f"{name}.txt").write_text(
            "".join(f"{k}: {_fmt(calib[k])}\n" for k in ("P0", "P1", "P2", "P3"))
            + f"R_rect {_fmt(np.eye(3))}\nTr_velo_cam {_fmt(calib['Tr'])}\n"
            + f"Tr_imu_velo {_fmt(calib['Tr_imu_velo'])}\n"
        )
        (root / "oxts" / f"{name}.txt").write_text("\n".join(_oxts_lines(world, config.frames)) + "\n")
        labels = []
        for i in range(config.frames):
            t = i * FRAME_DT
            frame = renderer.render_cameras(t, rig.cameras)
            save_image(root / "image_02" / name / f"{i:06d}.png", frame.rgb[0])
            save_image(root / "image_03" / name / f"{i:06d}.png", frame.rgb[1])
            _write_velodyne(root / "velodyne" / name / f"{i:06d}.bin", renderer.render_lidar(t, rig.lidar))
            labels.extend(_track_labels(world, frame, rig, i, t, cam0))
            if progress is not None:
                progress(1)
        (root / "label_02" / f"{name}.txt").write_text("".join(line + "\n" for line in labels))
    elapsed = time.perf_counter() - t_start
    n = config.sequences * config.frames
    return {"sequences": config.sequences, "frames": n, "seconds": elapsed, "seconds_per_frame": elapsed / n}


def _track_labels(world: World, frame, rig: Rig, i: int, t: float, cam0: np.ndarray) -> list[str]:
    """label_02 lines of frame ``i``: objects with at least 10 visible pixels in image_02."""
    cam = rig.cameras[0]
    k = cam.intrinsics
    map_to_cam0 = invert_pose(world.ego_pose(t) @ cam0)
    pix = np.bincount(frame.instance[0].reshape(-1), minlength=len(world.agents) + 1)
    out = []
    for box in annotation_boxes(world, t):
        a = world.agents[box["agent"]]
        if pix[a.instance] < 10:
            continue
        length, width, height = box["size"]
        c, s = np.cos(box["yaw"]), np.sin(box["yaw"])
        g = np.array([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])
        local = g * np.array([length, width, height])
        corners = np.stack(
            [c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1], local[:, 2]], 1
        )
        corners_c = apply(map_to_cam0, corners + box["center"])
        centre_c = apply(map_to_cam0, box["center"])
        if centre_c[2] < 0.5:
            continue
        # Camera 2 sees camera-0 points shifted by its offset (rectified, same orientation).
        pc2 = corners_c + np.array([KITTI_CAM2_OFFSET, 0.0, 0.0])
        z = np.maximum(pc2[:, 2], 0.1)
        u = k[0, 0] * pc2[:, 0] / z + k[0, 2]
        v = k[1, 1] * pc2[:, 1] / z + k[1, 2]
        x1, y1, x2, y2 = u.min(), v.min(), u.max(), v.max()
        cx1, cy1 = np.clip([x1, y1], 0, [cam.width - 1, cam.height - 1])
        cx2, cy2 = np.clip([x2, y2], 0, [cam.width - 1, cam.height - 1])
        area = max((x2 - x1) * (y2 - y1), 1e-6)
        trunc = float(np.clip(1.0 - (cx2 - cx1) * (cy2 - cy1) / area, 0.0, 1.0))
        visible = pix[a.instance] / max((cx2 - cx1) * (cy2 - cy1), 1.0)
        occl = 0 if visible > 0.6 else (1 if visible > 0.3 else 2)
        heading = world_heading_cam(box["yaw"], map_to_cam0)
        ry = float(np.arctan2(-heading[1], heading[0]))
        bottom = centre_c + np.array([0.0, height / 2, 0.0])
        alpha = float((ry - np.arctan2(bottom[0], bottom[2]) + np.pi) % (2 * np.pi) - np.pi)
        out.append(
            " ".join(
                [
                    str(i),
                    str(a.instance - 1),
                    KITTI_TYPES[a.kind],
                    f"{trunc:.2f}",
                    str(occl),
                    f"{alpha:.6f}",
                    f"{cx1:.2f}",
                    f"{cy1:.2f}",
                    f"{cx2:.2f}",
                    f"{cy2:.2f}",
                    f"{height:.6f}",
                    f"{width:.6f}",
                    f"{length:.6f}",
                    f"{bottom[0]:.6f}",
                    f"{bottom[1]:.6f}",
                    f"{bottom[2]:.6f}",
                    f"{ry:.6f}",
                ]
            )
        )
    return out


def world_heading_cam(yaw: float, map_to_cam: np.ndarray) -> np.ndarray:
    """Heading of an object with map yaw ``yaw`` in a camera frame: (x, z) components."""
    h = map_to_cam[:3, :3] @ np.array([np.cos(yaw), np.sin(yaw), 0.0])
    return np.array([h[0], h[2]])
