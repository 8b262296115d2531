"""SemanticKittiSequences and KittiTrackingSequences on tiny folders written by the tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from occflow_data import (
    ImageConfig,
    KittiTrackingSequences,
    SemanticKittiSequences,
    SequenceConfig,
    collate_samples,
    oxts_poses,
    project_points,
    read_kitti_calib,
    relative_pose,
)
from volrender import SEMANTIC_KITTI

SMALL = ImageConfig(input_scale=1.0, input_size=None, loss_scale=0.5, loss_size=None)


def semkitti(root, split="val", **cfg):
    return SemanticKittiSequences(root, split, SequenceConfig(**{"image": SMALL, **cfg}), verbose=False)


def tracking(root, split="all", cameras=("image_02",), **cfg):
    return KittiTrackingSequences(
        root, split, SequenceConfig(**{"image": SMALL, **cfg}), cameras=cameras, verbose=False
    )


def _projection_matches_p(frame, calib_path, keys, rect=None):
    """Project Velodyne points with the frame's calibration and with KITTI's P @ R_rect @ Tr."""
    gen = torch.Generator().manual_seed(0)
    pts = torch.stack(
        [
            torch.rand(30, generator=gen) * 30 + 5,
            torch.rand(30, generator=gen) * 10 - 5,
            torch.rand(30, generator=gen) * 2 - 1,
        ],
        dim=-1,
    ).double()
    calib = read_kitti_calib(calib_path)
    tr = np.eye(4)
    tr[:3] = calib["Tr" if "Tr" in calib else "Tr_velo_cam"].reshape(3, 4)
    r = np.eye(4)
    if rect is not None:
        r[:3, :3] = calib[rect].reshape(3, 3)
    uv, depth = project_points(pts, frame.intrinsics.double(), frame.cam_to_ego.double())
    for c, key in enumerate(keys):
        p = calib[key].reshape(3, 4)
        hom = (p @ r @ tr @ np.concatenate([pts.numpy(), np.ones((30, 1))], axis=1).T).T
        expected = hom[:, :2] / hom[:, 2:]
        np.testing.assert_allclose(uv[c].numpy(), expected, atol=1e-4)
        np.testing.assert_allclose(depth[c].numpy(), hom[:, 2], atol=1e-6)


# ------------------------------------------------------------------------------ SemanticKITTI
def test_semantic_kitti_sample(semkitti_root, fx):
    ds = semkitti(semkitti_root, load_gt=True)
    assert ds.scenes == ["08"] and ds.summary.scenes_missing == []
    assert (ds.summary.samples, ds.summary.skipped_history, ds.summary.skipped_no_next) == (3, 2, 1)
    sample = ds[0]
    assert sample.meta["token"] == "08_000002" and sample.current.timestamp == pytest.approx(0.2)
    # ego_to_global: Velodyne poses relative to the first Velodyne frame
    for j, frame in enumerate([*sample.history, sample.current, sample.next]):
        expected = np.linalg.inv(fx.kitti_velo_pose(0)) @ fx.kitti_velo_pose(j)
        np.testing.assert_allclose(frame.ego_to_global.numpy(), expected, atol=1e-9)
    rel = relative_pose(sample.history[0].ego_to_global, sample.current.ego_to_global)
    np.testing.assert_allclose(
        rel.numpy(), np.linalg.inv(fx.kitti_velo_pose(2)) @ fx.kitti_velo_pose(0), atol=1e-9
    )
    _projection_matches_p(sample.current, semkitti_root / "sequences" / "08" / "calib.txt", ["P2"])
    raw = np.fromfile(semkitti_root / "sequences" / "08" / "velodyne" / "000002.bin", np.float32).reshape(
        -1, 4
    )
    torch.testing.assert_close(sample.current.lidar, torch.from_numpy(raw[:, :3]))


def test_semantic_kitti_stereo_cameras(semkitti_root, fx):
    ds = SemanticKittiSequences(
        semkitti_root,
        ["00"],
        SequenceConfig(image=SMALL, history=1),
        cameras=("image_2", "image_3"),
        verbose=False,
    )
    frame = ds[0].current
    assert frame.images.shape == (2, 3, 24, 80)
    _projection_matches_p(frame, semkitti_root / "sequences" / "00" / "calib.txt", ["P2", "P3"])
    baseline = torch.linalg.norm(frame.cam_to_ego[0, :3, 3] - frame.cam_to_ego[1, :3, 3])
    assert baseline.item() == pytest.approx(fx.KITTI_BASELINE, abs=1e-5)


def test_semantic_kitti_ground_truth(semkitti_root):
    gt = semkitti(semkitti_root, load_gt=True)[0].gt
    assert gt.grid == SEMANTIC_KITTI and gt.flow is None
    assert gt.occupancy[5, 5, 0] == 11  # road -> driveable_surface
    assert gt.occupancy[55, 128, 3] == 4  # car
    assert gt.occupancy[5, 5, 10] == 17  # empty -> free
    assert not gt.mask_lidar[:, :, 20:].any() and gt.mask_lidar[:, :, :20].all()
    # camera mask: observed and inside image_2's view (a voxel in front is, one at the side is not)
    assert gt.mask_camera[100, 128, 5] and not gt.mask_camera[0, 0, 5]
    assert not (gt.mask_camera & ~gt.mask_lidar).any()


def test_semantic_kitti_sparse_labels_are_counted(tmp_path, fx):
    root = fx.write_semantic_kitti(tmp_path, {"08": 12}, voxels_every=5)
    ds = semkitti(root, load_gt=True)
    # keyframes 2..10 have history and a next frame; of those only 5 and 10 have voxel labels
    assert [s.meta["token"] for s in ds] == ["08_000005", "08_000010"]
    assert ds.summary.skipped_no_gt == 7
    s = ds.summary
    assert s.keyframes == s.samples + s.skipped_history + s.skipped_no_next + s.skipped_no_gt


def test_semantic_kitti_bad_data(tmp_path, fx):
    root = fx.write_semantic_kitti(tmp_path, {"08": 5})
    seq = root / "sequences" / "08"
    with pytest.raises(ValueError, match="unknown SemanticKITTI split 'validation'"):
        semkitti(root, split="validation")
    with pytest.raises(FileNotFoundError, match=r"sequences \['09'\] not found"):
        semkitti(root, split=["09"])
    with pytest.raises(FileNotFoundError, match="KITTI odometry folder not found: .*nowhere/sequences"):
        semkitti(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"scene 08 has 5 keyframes, but history=4 .* need 6"):
        semkitti(root, history=4)
    lines = (seq / "poses.txt").read_text().splitlines()
    (seq / "poses.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="sequence 08: 4 poses for 5 images"):
        semkitti(root)
    (seq / "poses.txt").write_text("\n".join(lines) + "\n")
    calib = (seq / "calib.txt").read_text()
    (seq / "calib.txt").write_text(calib.replace("Tr:", "Tr: 1.0"))
    with pytest.raises(ValueError, match=r"inconsistent calibration in .*calib.txt: Tr has 13 values"):
        semkitti(root)
    bad_p2 = "\n".join(
        "P2: 0 0 0 0 0 0 0 0 0 0 0 0" if line.startswith("P2:") else line for line in calib.splitlines()
    )
    (seq / "calib.txt").write_text(bad_p2)
    with pytest.raises(ValueError, match=r"inconsistent calibration in .*calib.txt: P2\[:, :3\] must be"):
        semkitti(root)
    (seq / "calib.txt").write_text(calib)
    (seq / "image_2" / "000003.png").unlink()
    with pytest.raises(ValueError, match="frame numbers are not consecutive"):
        semkitti(root)


def test_semantic_kitti_missing_voxels(tmp_path, fx):
    root = fx.write_semantic_kitti(tmp_path, {"08": 5})
    ds = semkitti(root, load_gt=True)
    (root / "sequences" / "08" / "voxels" / "000002.invalid").unlink()
    with pytest.raises(FileNotFoundError, match=r"SemanticKITTI invalid mask not found: .*000002.invalid"):
        ds[0]
    (root / "sequences" / "08" / "voxels" / "000003.label").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match=r"000003.label: 5 uint16 labels, expected 2097152"):
        ds[1]


# ------------------------------------------------------------------------------ KITTI tracking
def test_oxts_poses_follow_the_mercator_convention():
    earth = 6378137.0
    rows = np.zeros((3, 30))
    rows[:, 0] = 49.0
    rows[:, 1] = [8.4, 8.4 + 1e-4, 8.4]
    rows[:, 2] = [100.0, 100.0, 103.0]
    rows[2, 5] = 0.5  # yaw
    poses = oxts_poses(rows)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    scale = math.cos(math.radians(49.0))
    np.testing.assert_allclose(poses[1][:3, 3], [scale * earth * math.radians(1e-4), 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(poses[2][:3, 3], [0.0, 0.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(
        poses[2][:2, :2], [[math.cos(0.5), -math.sin(0.5)], [math.sin(0.5), math.cos(0.5)]], atol=1e-12
    )
    # one step north: y grows by scale * R * (log tan(pi/4 + lat1/2) - log tan(pi/4 + lat0/2))
    rows2 = rows[:2].copy()
    rows2[1, 1] = 8.4
    rows2[1, 0] = 49.001
    dy = (
        scale
        * earth
        * (math.log(math.tan(math.radians(90 + 49.001) / 2)) - math.log(math.tan(math.radians(139) / 2)))
    )
    np.testing.assert_allclose(oxts_poses(rows2)[1][:3, 3], [0.0, dy, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match=r"oxts must be \[T, >= 6\] rows"):
        oxts_poses(np.zeros((3, 4)))


def test_tracking_sample(tracking_root):
    ds = tracking(tracking_root, cameras=("image_02", "image_03"))
    assert ds.scenes == ["0000", "0001"] and len(ds) == 3 + 2
    sample = ds[0]
    assert sample.meta["token"] == "0000_000002" and sample.current.timestamp == pytest.approx(0.2)
    assert sample.meta["objects"][0]["type"] == "Car" and sample.meta["objects"][0]["location"] == [
        2.0,
        1.6,
        15.0,
    ]
    _projection_matches_p(
        sample.current, tracking_root / "training" / "calib" / "0000.txt", ["P2", "P3"], rect="R_rect"
    )
    # ego (Velodyne) poses = oxts IMU poses composed with Velodyne -> IMU
    calib = read_kitti_calib(tracking_root / "training" / "calib" / "0000.txt")
    imu_to_velo = np.eye(4)
    imu_to_velo[:3] = calib["Tr_imu_velo"].reshape(3, 4)
    oxts = np.loadtxt(tracking_root / "training" / "oxts" / "0000.txt")
    expected = oxts_poses(oxts)[2] @ np.linalg.inv(imu_to_velo)
    np.testing.assert_allclose(sample.current.ego_to_global.numpy(), expected, atol=1e-9)
    assert sample.aux_prev is not None and sample.meta["aux_distance"] > 0


def test_tracking_bad_data(tmp_path, fx):
    root = fx.write_kitti_tracking(tmp_path, {"0000": 5})
    base = root / "training"
    with pytest.raises(ValueError, match="unknown KITTI tracking split 'train'"):
        tracking(root, split="train")
    with pytest.raises(FileNotFoundError, match=r"sequences \['0003'\] not found"):
        tracking(root, split=["0003"])
    (base / "calib" / "0000.txt").rename(base / "calib" / "x.txt")
    with pytest.raises(FileNotFoundError, match=r"KITTI calibration file not found: .*calib/0000.txt"):
        tracking(root)
    (base / "calib" / "x.txt").rename(base / "calib" / "0000.txt")
    text = (base / "calib" / "0000.txt").read_text()
    (base / "calib" / "0000.txt").write_text(text.replace("Tr_imu_velo", "Tr_imu_velo_old"))
    with pytest.raises(ValueError, match=r"calib/0000.txt: no Tr_imu_velo entry"):
        tracking(root)
    (base / "calib" / "0000.txt").write_text(text)
    oxts = (base / "oxts" / "0000.txt").read_text().splitlines()
    (base / "oxts" / "0000.txt").write_text("\n".join(oxts[:3]) + "\n")
    with pytest.raises(ValueError, match="sequence 0000: 3 poses for 5 images"):
        tracking(root)
    (base / "oxts" / "0000.txt").write_text("\n".join(oxts) + "\n")
    (base / "image_03" / "0000" / "000004.png").unlink()
    with pytest.raises(ValueError, match=r"image_03/0000 has 4 images but .*image_02/0000 has 5"):
        tracking(root, cameras=("image_02", "image_03"))
    (base / "velodyne" / "0000" / "000003.bin").write_bytes(b"\0" * 12)
    ds = tracking(root, aux_prev=False)
    with pytest.raises(ValueError, match=r"000003.bin has 3 float32 values, expected a multiple of 4"):
        ds[1]


def test_dataloader_with_workers(tracking_root):
    ds = tracking(tracking_root)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_samples)
    batches = list(loader)
    assert sum(b.batch_size for b in batches) == len(ds)
    tokens = [m["token"] for b in batches for m in b.meta]
    assert tokens == [ds.sample_key(i) for i in range(len(ds))]
    # the auxiliary draw does not depend on the worker layout
    assert [m["aux_token"] for b in batches for m in b.meta] == [ds.draw_aux(i).key for i in range(len(ds))]
    assert batches[0].current.lidar_mask.shape == batches[0].current.lidar.shape[:2]


def test_sequence_config_rejects_bad_values():
    with pytest.raises(ValueError, match="SequenceConfig.history must be an int >= 0"):
        SequenceConfig(history=-1)
    with pytest.raises(ValueError, match="SequenceConfig.history_stride must be an int >= 1"):
        SequenceConfig(history_stride=0)
    with pytest.raises(ValueError, match=r"SequenceConfig.aux_range must be \(min, max\)"):
        SequenceConfig(aux_range=(5.0, 1.0))
    with pytest.raises(ValueError, match="aux_sigma > 0"):
        SequenceConfig(aux_sigma=0.0)
    with pytest.raises(ValueError, match="SequenceConfig.scene_start must be 'skip' or 'pad'"):
        SequenceConfig(scene_start="repeat")
    with pytest.raises(ValueError, match=r"SequenceConfig.cues has unknown cues \['optical_flow'\]"):
        SequenceConfig(cues=("optical_flow",), cue_cache="/tmp")
    with pytest.raises(ValueError, match="needs SequenceConfig.cue_cache"):
        SequenceConfig(cues=("flow",))
    with pytest.raises(ValueError, match="'flow' or 'track'"):
        SequenceConfig(cues=("flow", "track"), cue_cache="/tmp")
    with pytest.raises(TypeError, match="SequenceConfig.image must be an ImageConfig"):
        SequenceConfig(image=(512, 1408))


def test_reader_index_errors(tracking_root):
    ds = tracking(tracking_root)
    with pytest.raises(IndexError, match="index 99 out of range for 5 samples"):
        ds[99]
    with pytest.raises(TypeError, match="index must be an int"):
        ds["0"]
    last = ds[-1].meta
    assert last["token"] == ds.sample_key(len(ds) - 1) and last["index"] == len(ds) - 1
