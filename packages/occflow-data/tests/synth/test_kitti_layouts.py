"""KITTI odometry + SemanticKITTI and KITTI tracking writers."""

from __future__ import annotations

import numpy as np
import pytest

from occflow_data.synth import (
    KittiConfig,
    Renderer,
    kitti_rig,
    make_world,
    write_kitti_odometry,
    write_kitti_tracking,
)
from occflow_data.synth._kitti import FRAME_DT, sequence_seed


@pytest.fixture(scope="module")
def odometry(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti_odometry")
    cfg = KittiConfig(
        sequences=1, frames=6, seed=3, height=64, width=208, voxel_stride=5, lidar_azimuth_bins=900
    )
    write_kitti_odometry(root, cfg)
    return root, cfg


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti_tracking")
    cfg = KittiConfig(sequences=1, frames=4, seed=5, height=64, width=208, lidar_azimuth_bins=900)
    write_kitti_tracking(root, cfg)
    return root, cfg


def _calib(path) -> dict[str, np.ndarray]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, vals = line.replace(":", " ", 1).partition(" ")
        out[key.strip()] = np.array([float(v) for v in vals.split()])
    return out


def test_odometry_files_and_voxels(odometry):
    root, cfg = odometry
    seq = root / "sequences" / "00"
    for sub in ("image_2", "image_3", "velodyne", "labels"):
        assert len(list((seq / sub).iterdir())) == cfg.frames
    assert sorted(p.name for p in (seq / "voxels").iterdir()) == [
        f"{i:06d}.{ext}" for i in (0, 5) for ext in ("bin", "invalid", "label", "occluded")
    ]
    n = 256 * 256 * 32
    occ = np.unpackbits(np.fromfile(seq / "voxels" / "000000.bin", np.uint8))
    label = np.fromfile(seq / "voxels" / "000000.label", np.uint16)
    invalid = np.unpackbits(np.fromfile(seq / "voxels" / "000000.invalid", np.uint8))
    occluded = np.unpackbits(np.fromfile(seq / "voxels" / "000000.occluded", np.uint8))
    assert occ.size == label.size == invalid.size == occluded.size == n
    assert np.array_equal(occ.astype(bool), label > 0)
    assert {40, 48}.issubset(set(np.unique(label).tolist()))  # road and sidewalk
    grid = label.reshape(256, 256, 32)
    # The road (40) lies in the z slice of the ground under the sensor (velodyne at 1.73 m, z from -2 m).
    assert (grid[:, :, 1] == 40).sum() > (grid[:, :, 8] == 40).sum()
    assert invalid.mean() <= occluded.mean() + 1e-9  # visible now implies valid
    poses = np.loadtxt(seq / "poses.txt").reshape(-1, 3, 4)
    assert poses.shape[0] == cfg.frames
    np.testing.assert_allclose(poses[0], np.eye(4)[:3], atol=1e-9)
    assert poses[-1][2, 3] > 1.0  # moved forward along the camera's z axis
    times = np.loadtxt(seq / "times.txt")
    np.testing.assert_allclose(np.diff(times), FRAME_DT)


def test_odometry_calibration_projects_lidar_onto_depth(odometry):
    root, cfg = odometry
    seq = root / "sequences" / "00"
    calib = _calib(seq / "calib.txt")
    tr = np.vstack([calib["Tr"].reshape(3, 4), [0, 0, 0, 1]])
    p2 = calib["P2"].reshape(3, 4)
    pts = np.fromfile(seq / "velodyne" / "000002.bin", np.float32).reshape(-1, 4)[:, :3]
    world = make_world(sequence_seed(cfg.seed, 0), cfg.frames * FRAME_DT + 0.5, cfg.world)
    rig = kitti_rig(cfg.height, cfg.width, cfg.lidar_azimuth_bins)
    frame = Renderer(world).render_cameras(2 * FRAME_DT, rig.cameras)

    def agreement(p):
        cam0 = pts @ tr[:3, :3].T + tr[:3, 3]
        hom = np.c_[cam0, np.ones(len(cam0))] @ p.T
        z = hom[:, 2]
        ok = z > 1.0
        u = np.round(hom[ok, 0] / z[ok]).astype(int)
        v = np.round(hom[ok, 1] / z[ok]).astype(int)
        inside = (u >= 0) & (v >= 0) & (u < cfg.width) & (v < cfg.height)
        # Camera 2's z-depth equals camera 0's (rectified, same orientation).
        d = frame.depth[0][v[inside], u[inside]]
        zz = cam0[ok, 2][inside]
        return np.mean(np.abs(d - zz) < 0.05 * zz + 0.1), inside.sum()

    good, n = agreement(p2)
    assert n > 500 and good > 0.8
    p_wrong = p2.copy()
    p_wrong[0, 3] += 40 * p2[0, 0] / 100  # 0.4 m baseline error
    assert agreement(p_wrong)[0] < good - 0.1


def test_tracking_layout(tracking):
    root, cfg = tracking
    tr = root / "training"
    for sub in ("image_02", "image_03", "velodyne"):
        assert len(list((tr / sub / "0000").iterdir())) == cfg.frames
    calib = _calib(tr / "calib" / "0000.txt")
    assert set(calib) == {"P0", "P1", "P2", "P3", "R_rect", "Tr_velo_cam", "Tr_imu_velo"}
    # Stereo baseline from P2/P3: 0.54 m.
    fx = calib["P2"][0]
    np.testing.assert_allclose((calib["P2"][3] - calib["P3"][3]) / fx, 0.54, atol=1e-9)
    oxts = np.loadtxt(tr / "oxts" / "0000.txt")
    assert oxts.shape == (cfg.frames, 30)
    # KITTI devkit's Mercator conversion recovers the ego's travelled distance.
    er, scale = 6378137.0, np.cos(np.deg2rad(oxts[0, 0]))
    mx = scale * np.deg2rad(oxts[:, 1]) * er
    my = scale * er * np.log(np.tan(np.deg2rad(90 + oxts[:, 0]) / 2))
    world = make_world(sequence_seed(cfg.seed, 0), cfg.frames * FRAME_DT + 0.5, cfg.world)
    travelled = np.linalg.norm(world.ego_pose((cfg.frames - 1) * FRAME_DT)[:2, 3] - world.ego_pose(0)[:2, 3])
    np.testing.assert_allclose(np.hypot(mx[-1] - mx[0], my[-1] - my[0]), travelled, rtol=1e-6)
    lines = [ln.split() for ln in (tr / "label_02" / "0000.txt").read_text().splitlines()]
    assert lines and all(len(ln) == 17 for ln in lines)
    p2 = calib["P2"].reshape(3, 4)
    for ln in lines:
        h, x, y, z = float(ln[10]), float(ln[13]), float(ln[14]), float(ln[15])
        centre = np.array([x, y - h / 2, z, 1.0]) @ p2.T
        u, v = centre[:2] / centre[2]
        x1, y1, x2, y2 = map(float, ln[6:10])
        if float(ln[3]) < 0.1:  # untruncated: the 3D centre projects into the 2D box
            assert x1 - 1 <= u <= x2 + 1 and y1 - 1 <= v <= y2 + 1
