"""Tiny datasets written by the tests themselves (nuScenes tables, KITTI folders).

The ego drives along a known trajectory; the cameras and the LiDAR have known calibrations, so
the tests can check the readers' geometry exactly. Images are small random JPEG/PNG files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# OpenCV camera looking along ego +x: columns are the camera axes expressed in the ego frame.
CAM_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def quat_wxyz(r: np.ndarray) -> list[float]:
    """Unit quaternion (w, x, y, z) of a rotation matrix (trace method, r has trace > -1 here)."""
    w = math.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    if w > 1e-3:
        return [
            w,
            (r[2, 1] - r[1, 2]) / (4 * w),
            (r[0, 2] - r[2, 0]) / (4 * w),
            (r[1, 0] - r[0, 1]) / (4 * w),
        ]
    # 180-degree rotations: pick the largest diagonal entry.
    i = int(np.argmax(np.diag(r)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = math.sqrt(max(0.0, 1.0 + r[i, i] - r[j, j] - r[k, k])) * 2
    q = [0.0, 0.0, 0.0, 0.0]
    q[0] = (r[k, j] - r[j, k]) / s
    q[1 + i] = s / 4
    q[1 + j] = (r[j, i] + r[i, j]) / s
    q[1 + k] = (r[k, i] + r[i, k]) / s
    return q


def ego_pose_at(t: float) -> np.ndarray:
    """Ego-to-global pose of the fixture trajectory at time t (s): a gentle left curve."""
    pose = np.eye(4)
    pose[:3, :3] = rot_z(0.05 * t)
    pose[:3, 3] = [100.0 + 6.0 * t, 50.0 + 0.3 * t * t, 0.0]
    return pose


NUSC_CAMERAS = {  # channel -> (rotation cam->ego, translation, intrinsics)
    "CAM_FRONT": (CAM_FORWARD, [1.5, 0.0, 1.6], [[40.0, 0.0, 32.0], [0.0, 40.0, 18.0], [0.0, 0.0, 1.0]]),
    "CAM_BACK": (
        rot_z(math.pi) @ CAM_FORWARD,
        [-1.0, 0.0, 1.6],
        [[30.0, 0.0, 31.5], [0.0, 30.0, 17.5], [0.0, 0.0, 1.0]],
    ),
}
LIDAR_CALIB = (rot_z(0.1), [0.9, 0.0, 1.8])


def write_nuscenes(
    root: Path,
    scenes: dict[str, int],
    *,
    version: str = "v1.0-mini",
    sweeps: int = 2,
    occ: bool = True,
    seed: int = 0,
) -> Path:
    """A tiny nuScenes: ``scenes`` maps scene name -> number of keyframes (0.5 s apart)."""
    rng = np.random.default_rng(seed)
    tables: dict[str, list] = {
        t: []
        for t in (
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
    }
    (root / "maps").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "maps" / "map0.png")
    tables["log"].append(
        {
            "token": "log0",
            "logfile": "log0",
            "vehicle": "v",
            "date_captured": "2026-01-01",
            "location": "singapore-onenorth",
        }
    )
    tables["map"].append(
        {"token": "map0", "log_tokens": ["log0"], "category": "semantic_prior", "filename": "maps/map0.png"}
    )
    calib = {}
    for ch, (rot, trans, k) in {**NUSC_CAMERAS, "LIDAR_TOP": (*LIDAR_CALIB, [])}.items():
        tables["sensor"].append(
            {"token": f"sensor_{ch}", "channel": ch, "modality": "lidar" if ch == "LIDAR_TOP" else "camera"}
        )
        tables["calibrated_sensor"].append(
            {
                "token": f"cs_{ch}",
                "sensor_token": f"sensor_{ch}",
                "translation": list(trans),
                "rotation": quat_wxyz(rot),
                "camera_intrinsic": k,
            }
        )
        calib[ch] = f"cs_{ch}"
    start = 1_600_000_000_000_000
    for s_i, (name, n_key) in enumerate(scenes.items()):
        t0 = 100.0 * s_i
        sample_tokens = [f"{name}_s{k}" for k in range(n_key)]
        for k, tok in enumerate(sample_tokens):
            tables["sample"].append(
                {
                    "token": tok,
                    "timestamp": start + round((t0 + 0.5 * k) * 1e6),
                    "prev": sample_tokens[k - 1] if k else "",
                    "next": sample_tokens[k + 1] if k + 1 < n_key else "",
                    "scene_token": f"scene_{name}",
                }
            )
        tables["scene"].append(
            {
                "token": f"scene_{name}",
                "log_token": "log0",
                "nbr_samples": n_key,
                "first_sample_token": sample_tokens[0],
                "last_sample_token": sample_tokens[-1],
                "name": name,
                "description": "",
            }
        )
        for c_i, ch in enumerate([*NUSC_CAMERAS, "LIDAR_TOP"]):
            chain = []
            for k in range(n_key):
                n_sub = 1 if (ch == "LIDAR_TOP" or k == n_key - 1) else sweeps + 1
                for j in range(n_sub):
                    # Each camera fires a few ms after the keyframe time, differently per camera.
                    t = (
                        t0
                        + 0.5 * k
                        + 0.5 * j / (sweeps + 1)
                        + (0.0 if ch == "LIDAR_TOP" else 0.012 * (c_i + 1))
                    )
                    chain.append((k, j == 0, t))
            tokens = [f"{name}_{ch}_{i}" for i in range(len(chain))]
            for i, (k, key, t) in enumerate(chain):
                folder = "samples" if key else "sweeps"
                ext = "pcd.bin" if ch == "LIDAR_TOP" else "jpg"
                filename = f"{folder}/{ch}/{tokens[i]}.{ext}"
                path = root / filename
                path.parent.mkdir(parents=True, exist_ok=True)
                if ch == "LIDAR_TOP":
                    pts = rng.uniform(-20, 20, size=(50, 5)).astype(np.float32)
                    pts.tofile(path)
                else:
                    Image.fromarray(rng.integers(0, 255, size=(36, 64, 3), dtype=np.uint8)).save(path)
                ts = start + round(t * 1e6)
                pose = ego_pose_at(t)
                tables["ego_pose"].append(
                    {
                        "token": f"ep_{tokens[i]}",
                        "timestamp": ts,
                        "translation": pose[:3, 3].tolist(),
                        "rotation": quat_wxyz(pose[:3, :3]),
                    }
                )
                tables["sample_data"].append(
                    {
                        "token": tokens[i],
                        "sample_token": sample_tokens[min(k + (0 if key else 1), n_key - 1)],
                        "ego_pose_token": f"ep_{tokens[i]}",
                        "calibrated_sensor_token": calib[ch],
                        "timestamp": ts,
                        "fileformat": ext.split(".")[-1],
                        "is_key_frame": key,
                        "height": 0 if ch == "LIDAR_TOP" else 36,
                        "width": 0 if ch == "LIDAR_TOP" else 64,
                        "filename": filename,
                        "prev": tokens[i - 1] if i else "",
                        "next": tokens[i + 1] if i + 1 < len(tokens) else "",
                    }
                )
        if occ:
            for k, tok in enumerate(sample_tokens):
                folder = root / "gts" / name / tok
                folder.mkdir(parents=True, exist_ok=True)
                sem = np.full((200, 200, 16), 17, np.uint8)
                sem[:, :, 0] = 11
                sem[100 + k, 90:110, 1:5] = 4
                flow = np.zeros((200, 200, 16, 2), np.float32)
                flow[100 + k, 90:110, 1:5] = [2.0, 0.0]
                np.savez_compressed(
                    folder / "labels.npz",
                    semantics=sem,
                    mask_lidar=(sem != 17).astype(np.uint8),
                    mask_camera=np.ones_like(sem),
                    flow=flow,
                )
    (root / version).mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (root / version / f"{name}.json").write_text(json.dumps(rows))
    return root


# ------------------------------------------------------------------------------------ KITTI
KITTI_K = np.array([[60.0, 0.0, 40.0], [0.0, 60.0, 12.0], [0.0, 0.0, 1.0]])
KITTI_BASELINE = 0.54
# Velodyne -> rectified cam 0: the usual axis swap plus a small offset.
KITTI_TR = np.eye(4)
KITTI_TR[:3, :3] = CAM_FORWARD.T
KITTI_TR[:3, 3] = [0.0, -0.08, -0.27]


def _kitti_p(offset_x: float) -> np.ndarray:
    """P = K [I | t] for a rectified camera at x = offset_x (metres) in cam-0 coordinates."""
    p = np.zeros((3, 4))
    p[:, :3] = KITTI_K
    p[:, 3] = KITTI_K @ np.array([-offset_x, 0.0, 0.0])
    return p


def _fmt(m: np.ndarray) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(m).reshape(-1))


def kitti_velo_pose(i: int) -> np.ndarray:
    """Velodyne-to-world pose of frame i of the KITTI fixtures."""
    return ego_pose_at(0.1 * i)


def _write_frames(folder_imgs: list[Path], velodyne: Path, n: int, rng) -> None:
    for d in (*folder_imgs, velodyne):
        d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        for d in folder_imgs:
            Image.fromarray(rng.integers(0, 255, size=(24, 80, 3), dtype=np.uint8)).save(d / f"{i:06d}.png")
        rng.uniform(-20, 20, size=(40, 4)).astype(np.float32).tofile(velodyne / f"{i:06d}.bin")


def write_semantic_kitti(
    root: Path, sequences: dict[str, int], *, voxels_every: int = 1, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    for name, n in sequences.items():
        seq = root / "sequences" / name
        _write_frames([seq / "image_2", seq / "image_3"], seq / "velodyne", n, rng)
        (seq / "calib.txt").write_text(
            "".join(
                f"P{i}: {_fmt(_kitti_p(o))}\n"
                for i, o in enumerate([0.0, KITTI_BASELINE, 0.06, 0.06 + KITTI_BASELINE])
            )
            + f"Tr: {_fmt(KITTI_TR[:3])}\n"
        )
        (seq / "times.txt").write_text("".join(f"{0.1 * i:.6e}\n" for i in range(n)))
        tr_inv = np.linalg.inv(KITTI_TR)
        # poses.txt holds cam-0 poses in the first cam-0 frame: Tr @ velo_pose0^-1 @ velo_pose_i @ Tr^-1.
        base = np.linalg.inv(kitti_velo_pose(0))
        rows = [KITTI_TR @ base @ kitti_velo_pose(i) @ tr_inv for i in range(n)]
        (seq / "poses.txt").write_text("".join(_fmt(r[:3]) + "\n" for r in rows))
        vox = seq / "voxels"
        vox.mkdir(parents=True, exist_ok=True)
        for i in range(0, n, voxels_every):
            labels = np.zeros((256, 256, 32), np.uint16)
            labels[:, :, 0] = 40  # road
            labels[50:60, 120:136, 1:8] = 10  # a car
            labels.tofile(vox / f"{i:06d}.label")
            invalid = np.zeros((256, 256, 32), bool)
            invalid[:, :, 20:] = True
            np.packbits(invalid.reshape(-1)).tofile(vox / f"{i:06d}.invalid")
            np.packbits(np.zeros(256 * 256 * 32, bool)).tofile(vox / f"{i:06d}.occluded")
            np.packbits((labels != 0).reshape(-1)).tofile(vox / f"{i:06d}.bin")
    return root


def write_kitti_tracking(root: Path, sequences: dict[str, int], *, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = root / "training"
    for d in ("calib", "oxts", "label_02"):
        (base / d).mkdir(parents=True, exist_ok=True)
    r_rect = rot_z(0.0)
    imu_to_velo = np.eye(4)
    imu_to_velo[:3, 3] = [0.8, -0.3, 0.9]
    for name, n in sequences.items():
        _write_frames([base / "image_02" / name, base / "image_03" / name], base / "velodyne" / name, n, rng)
        (base / "calib" / f"{name}.txt").write_text(
            "".join(
                f"P{i}: {_fmt(_kitti_p(o))}\n"
                for i, o in enumerate([0.0, KITTI_BASELINE, 0.06, 0.06 + KITTI_BASELINE])
            )
            + f"R_rect {_fmt(r_rect)}\nTr_velo_cam {_fmt(KITTI_TR[:3])}\n"
            + f"Tr_imu_velo {_fmt(imu_to_velo[:3])}\n"
        )
        # oxts: drive north-east from a point in Karlsruhe with a slowly turning yaw.
        lines = []
        for i in range(n):
            lat = 49.0 + 1e-5 * i
            lon = 8.4 + 2e-5 * i
            lines.append(
                " ".join(
                    f"{v:.10f}"
                    for v in [lat, lon, 112.0 + 0.01 * i, 0.01, -0.02, 0.3 + 0.01 * i] + [0.0] * 24
                )
            )
        (base / "oxts" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        (base / "label_02" / f"{name}.txt").write_text(
            "".join(f"{i} 1 Car 0 0 -1.5 10 10 30 20 1.5 1.6 4.0 2.0 1.6 15.0 0.1\n" for i in range(n))
        )
    return root


@pytest.fixture(scope="session")
def nusc_root(tmp_path_factory) -> Path:
    return write_nuscenes(
        tmp_path_factory.mktemp("nusc"), {"scene-0061": 5, "scene-0103": 4, "scene-0553": 3}
    )


@pytest.fixture(scope="session")
def semkitti_root(tmp_path_factory) -> Path:
    return write_semantic_kitti(tmp_path_factory.mktemp("semkitti"), {"08": 6, "00": 4})


@pytest.fixture(scope="session")
def tracking_root(tmp_path_factory) -> Path:
    return write_kitti_tracking(tmp_path_factory.mktemp("tracking"), {"0000": 6, "0001": 5})


@pytest.fixture(scope="session")
def fx():
    """This module (its writers and constants): tests run with --import-mode=importlib and cannot
    import conftest by name."""
    import sys

    return sys.modules[__name__]
