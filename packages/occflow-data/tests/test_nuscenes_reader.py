"""NuScenesSequences on a tiny nuScenes written by the tests (conftest.write_nuscenes)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from occflow_data import (
    ImageConfig,
    NuScenesSequences,
    SequenceConfig,
    collate_samples,
    relative_pose,
)
from occflow_data.cues import save_cue
from volrender import OCC3D_NUSCENES

CAMS = ("CAM_FRONT", "CAM_BACK")
SMALL = ImageConfig(input_scale=1.0, input_size=None, loss_scale=0.5, loss_size=None)
START = 1_600_000_000.0  # fixture timestamps start here (s)


def make(root, split=("scene-0061", "scene-0103"), **cfg):
    config = SequenceConfig(**{"image": SMALL, **cfg})
    return NuScenesSequences(
        root,
        list(split) if not isinstance(split, str) else split,
        config,
        version="v1.0-mini",
        cameras=CAMS,
        verbose=False,
    )


@pytest.fixture(scope="module")
def ds(nusc_root):
    return make(nusc_root, occ_root=nusc_root)


def test_summary_counts_every_left_out_keyframe(ds):
    s = ds.summary
    # 5 + 4 keyframes; history 2 skips the first two of each scene, the last has no next frame.
    assert (s.scenes, s.keyframes, s.samples) == (2, 9, 3)
    assert (s.skipped_history, s.skipped_no_next, s.padded_history) == (4, 2, 0)
    assert s.keyframes == s.samples + s.skipped_history + s.skipped_no_next
    assert s.frames == 9 + 2 * (4 + 3)  # two sweeps between consecutive keyframes
    assert "3 samples" in str(s) and "4 without enough history" in str(s)
    assert len(ds) == 3


def test_official_split_counts_missing_scenes(nusc_root):
    ds = make(nusc_root, split="mini_val", history=1)  # scene-0103 and scene-0916; only the first exists
    assert ds.scenes == ["scene-0103"]
    assert ds.summary.scenes_missing == ["scene-0916"]


def test_scene_start_pad_repeats_the_first_keyframe(nusc_root):
    ds = make(nusc_root, scene_start="pad")
    assert ds.summary.padded_history == 2 and ds.summary.skipped_history == 0
    assert ds.summary.skipped_no_aux == 2  # the first keyframe of a scene has no earlier frame
    sample = ds[0]
    assert sample.meta["token"] == "scene-0061_s1"
    assert sample.meta["history_tokens"] == ["scene-0061_s0", "scene-0061_s0"]


def test_frame_geometry_matches_the_raw_calibration(ds, fx):
    sample = ds[0]
    cur = sample.current
    t_key = 0.5 * sample.meta["keyframe"]
    # ego frame = the LiDAR's ego pose at the keyframe time
    torch.testing.assert_close(cur.ego_to_global, torch.from_numpy(fx.ego_pose_at(t_key)))
    assert cur.timestamp == pytest.approx(START + t_key)
    for c, ch in enumerate(CAMS):
        rot, trans, k = fx.NUSC_CAMERAS[ch]
        calib = np.eye(4)
        calib[:3, :3] = rot
        calib[:3, 3] = trans
        t_cam = t_key + 0.012 * (c + 1)  # each camera fires a little later than the keyframe time
        cam_to_global = fx.ego_pose_at(t_cam) @ calib
        got = cur.ego_to_global @ cur.cam_to_ego[c].double()
        torch.testing.assert_close(got, torch.from_numpy(cam_to_global), atol=1e-5, rtol=0)
        torch.testing.assert_close(cur.intrinsics[c], torch.tensor(k, dtype=torch.float32))
        # loss images at half resolution: f/2 and the half-pixel rule on the principal point
        torch.testing.assert_close(
            cur.loss_intrinsics[c, 0, 0], torch.tensor(k[0][0] / 2, dtype=torch.float32)
        )
        torch.testing.assert_close(
            cur.loss_intrinsics[c, 0, 2], torch.tensor((k[0][2] + 0.5) / 2 - 0.5, dtype=torch.float32)
        )
    assert cur.images.shape == (2, 3, 36, 64) and cur.loss_images.shape == (2, 3, 18, 32)


def test_lidar_is_in_the_ego_frame(ds, nusc_root, fx):
    sample = ds[0]
    raw = np.fromfile(
        nusc_root / "samples" / "LIDAR_TOP" / "scene-0061_LIDAR_TOP_2.pcd.bin", dtype=np.float32
    ).reshape(-1, 5)
    rot, trans = fx.LIDAR_CALIB
    expected = raw[:, :3] @ rot.T + np.array(trans)
    torch.testing.assert_close(sample.current.lidar, torch.from_numpy(expected.astype(np.float32)))
    assert sample.history[0].lidar is None and sample.next.lidar is None


def test_history_ego_motion_matches_the_poses(ds, fx):
    sample = ds[1]
    k = sample.meta["keyframe"]
    for j, frame in enumerate(sample.history):
        t_hist = 0.5 * (k - 2 + j)
        expected = np.linalg.inv(fx.ego_pose_at(0.5 * k)) @ fx.ego_pose_at(t_hist)
        torch.testing.assert_close(
            relative_pose(frame.ego_to_global, sample.current.ego_to_global),
            torch.from_numpy(expected),
            atol=1e-9,
            rtol=0,
        )
    assert sample.next.timestamp - sample.current.timestamp == pytest.approx(0.5)


def test_sweeps_between_keyframes(ds, fx):
    frames = ds.frames_between(0)
    assert [f.is_keyframe for f in frames] == [True, False, False, True]
    assert frames[0].key == ds.sample_key(0) and frames[-1].key == ds.next_frame_info(0).key
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)
    assert all(p.parent.parent.name == "sweeps" for p in frames[1].image_paths)
    # A sweep's cameras are expressed in the CAM_FRONT sweep's ego frame: still exact.
    sweep = frames[1]
    t = sweep.timestamp - START
    rot, trans, _ = fx.NUSC_CAMERAS["CAM_BACK"]
    calib = np.eye(4)
    calib[:3, :3] = rot
    calib[:3, 3] = trans
    # CAM_BACK's sweep nearest in time to CAM_FRONT's fires 12 ms later.
    expected = fx.ego_pose_at(t + 0.012) @ calib
    np.testing.assert_allclose(sweep.ego_to_global @ sweep.cam_to_ego[1], expected, atol=1e-5)  # us stamps


def test_aux_frames_follow_the_gaussian(ds):
    cfg = ds.config
    for index in range(len(ds)):
        frames, prob = ds.aux_distribution(index)
        cur = ds.frame_info(index)
        dist = np.array([np.linalg.norm(f.ego_to_global[:3, 3] - cur.ego_to_global[:3, 3]) for f in frames])
        assert np.all((dist >= cfg.aux_range[0]) & (dist <= cfg.aux_range[1]))
        assert all(f.timestamp < cur.timestamp for f in frames)
        weight = np.exp(-0.5 * ((dist - cfg.aux_mean) / cfg.aux_sigma) ** 2)
        np.testing.assert_allclose(prob, weight / weight.sum())
    # Empirical draws over epochs match the probabilities (3 sigma of the binomial counts).
    frames, prob = ds.aux_distribution(0)
    draws = 3000
    keys = [ds.draw_aux(0, epoch=e).key for e in range(draws)]
    counts = np.array([keys.count(f.key) for f in frames])
    sigma = np.sqrt(draws * prob * (1 - prob))
    assert np.all(np.abs(counts - draws * prob) <= 3 * sigma + 1)
    assert ds[0].meta["aux_token"] == ds.draw_aux(0).key


def test_ground_truth(ds):
    gt = ds[0].gt
    assert gt.grid == OCC3D_NUSCENES and gt.occupancy.shape == (200, 200, 16)
    k = ds[0].meta["keyframe"]
    assert gt.occupancy[100 + k, 100, 2] == 4 and gt.occupancy[0, 0, 5] == 17
    assert gt.flow[100 + k, 95, 3].tolist() == [2.0, 0.0]
    assert gt.mask_lidar.dtype == torch.bool


def test_cached_cues_are_resized_with_the_images(nusc_root, tmp_path):
    gen = torch.Generator().manual_seed(0)
    ds = make(nusc_root, cue_cache=tmp_path, cues=("flow", "mask", "depth"))
    key = ds.sample_key(0)
    flow = torch.zeros(2, 2, 36, 64)
    flow[:, 0] = 8.0
    flow[:, 1] = -4.0
    depth = torch.zeros(2, 36, 64)
    depth[0, 10, 20] = 7.5
    save_cue(
        tmp_path, "flow", key, {"flow": flow.numpy().astype(np.float16), "valid": np.ones((2, 36, 64), bool)}
    )
    save_cue(tmp_path, "mask", key, {"mask": (torch.rand(2, 36, 64, generator=gen) > 0.5).numpy()})
    save_cue(tmp_path, "depth", key, {"depth": depth.numpy().astype(np.float16)})
    cues = ds[0].current.cues
    assert cues["flow"].shape == (2, 2, 18, 32) and cues["flow_valid"].all()
    torch.testing.assert_close(cues["flow"][:, 0], torch.full((2, 18, 32), 4.0))  # x0.5
    torch.testing.assert_close(cues["flow"][:, 1], torch.full((2, 18, 32), -2.0))
    assert cues["movable"].dtype == torch.bool and cues["movable"].shape == (2, 18, 32)
    assert cues["lidar_depth"][0, 5, 10] == 7.5 and int((cues["lidar_depth"] > 0).sum()) == 1
    with pytest.raises(ValueError, match="cue file not found"):
        ds[1]


def test_lidar_depth_cue_projects_the_scan(nusc_root):
    ds = make(nusc_root, lidar_depth=True)
    cur = ds[0].current
    depth = cur.cues["lidar_depth"]
    assert depth.shape == (2, 18, 32) and (depth > 0).any()
    # every depth pixel is the camera z of some LiDAR point that projects there
    pts = cur.lidar
    cam = torch.linalg.inv(cur.cam_to_ego[0])
    z = pts @ cam[:3, :3].T + cam[:3, 3]
    v, u = torch.nonzero(depth[0], as_tuple=True)
    for d in depth[0, v, u]:
        assert torch.isclose(z[:, 2], d, atol=1e-5).any()


def test_dataloader_batches(ds):
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_samples)
    batch = next(iter(loader))
    assert batch.current.images.shape == (2, 2, 3, 36, 64)
    assert len(batch.history) == 2 and batch.aux_prev.loss_images.shape == (2, 2, 3, 18, 32)
    assert batch.gt.occupancy.shape == (2, 200, 200, 16)


# ------------------------------------------------------------------------------------ bad data
@pytest.fixture
def small_nusc(tmp_path, fx):
    return fx.write_nuscenes(tmp_path / "n", {"scene-0061": 4}, sweeps=1, occ=False)


def test_wrong_version_folder(small_nusc):
    with pytest.raises(
        FileNotFoundError, match=r"version folder not found: .*v1.0-trainval.*present: \['v1.0-mini'\]"
    ):
        NuScenesSequences(
            small_nusc,
            "mini_train",
            SequenceConfig(image=SMALL),
            version="v1.0-trainval",
            cameras=CAMS,
            verbose=False,
        )


def test_missing_table(small_nusc):
    (small_nusc / "v1.0-mini" / "instance.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"tables missing in .*v1.0-mini: instance.json"):
        make(small_nusc, split="mini_train")


def test_map_must_cover_every_log(small_nusc):
    path = small_nusc / "v1.0-mini" / "map.json"
    maps = json.loads(path.read_text())
    maps[0]["log_tokens"] = []
    path.write_text(json.dumps(maps))
    with pytest.raises(ValueError, match=r"map.json: logs \['log0'\] are in no map record's log_tokens"):
        make(small_nusc, split="mini_train")


def test_unknown_split_and_scene(small_nusc):
    with pytest.raises(ValueError, match="unknown nuScenes split 'minitrain'"):
        make(small_nusc, split="minitrain")
    with pytest.raises(ValueError, match=r"scenes \['scene-9999'\] are not in"):
        make(small_nusc, split=["scene-9999"])
    with pytest.raises(ValueError, match="none of the 2 scenes of split 'mini_val'"):
        make(small_nusc, split="mini_val")


def test_scene_too_short(small_nusc):
    with pytest.raises(ValueError, match=r"scene scene-0061 has 4 keyframes, but history=3 .* need 5"):
        make(small_nusc, split="mini_train", history=3)


def test_missing_image_file(small_nusc):
    (small_nusc / "samples" / "CAM_BACK" / "scene-0061_CAM_BACK_0.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"scene-0061: file not found: .*CAM_BACK_0.jpg"):
        make(small_nusc, split="mini_train")


def test_missing_image_at_load_time(small_nusc):
    ds = make(small_nusc, split="mini_train", history=1, aux_prev=False)
    shutil.rmtree(small_nusc / "sweeps")
    ds[0]  # keyframes only: fine
    (small_nusc / "samples" / "CAM_FRONT" / "scene-0061_CAM_FRONT_4.jpg").unlink()  # keyframe 2
    with pytest.raises(FileNotFoundError, match=r"image not found: .*scene-0061_CAM_FRONT_4.jpg"):
        ds[1]


def test_missing_ground_truth(small_nusc, tmp_path):
    (tmp_path / "occ" / "gts").mkdir(parents=True)
    with pytest.raises(
        FileNotFoundError, match=r"Occ3D ground truth not found: .*gts/scene-0061/scene-0061_s0"
    ):
        make(small_nusc, split="mini_train", occ_root=tmp_path / "occ")
    with pytest.raises(FileNotFoundError, match=r"Occ3D ground truth folder not found: .*nowhere/gts"):
        make(small_nusc, split="mini_train", occ_root=tmp_path / "nowhere")


def test_inconsistent_calibration(small_nusc):
    path = small_nusc / "v1.0-mini" / "calibrated_sensor.json"
    rows = json.loads(path.read_text())
    rows[0]["rotation"] = [0.5, 0.5, 0.0, 0.0]
    path.write_text(json.dumps(rows))
    with pytest.raises(
        ValueError, match=r"inconsistent calibration in calibrated_sensor cs_CAM_FRONT.*unit quaternion"
    ):
        make(small_nusc, split="mini_train")


def test_principal_point_outside_the_image(small_nusc):
    path = small_nusc / "v1.0-mini" / "calibrated_sensor.json"
    rows = json.loads(path.read_text())
    rows[1]["camera_intrinsic"] = [[1000.0, 0, 800.0], [0, 1000.0, 450.0], [0, 0, 1]]  # a 1600x900 camera
    path.write_text(json.dumps(rows))
    ds = make(small_nusc, split="mini_train", history=1)
    with pytest.raises(
        ValueError, match=r"inconsistent calibration for .*CAM_BACK.*principal point \(800.0, 450.0\)"
    ):
        ds[0]



def test_keyframe_poses_cover_the_scene(ds):
    for index in range(len(ds)):
        poses, ref = ds.keyframe_poses(index)
        sample = ds[index]
        assert ref == sample.meta["keyframe"]
        assert poses.dtype == np.float64 and poses.shape[1:] == (4, 4) and len(poses) > ref + 1
        torch.testing.assert_close(torch.from_numpy(poses[ref]), sample.current.ego_to_global)
        torch.testing.assert_close(torch.from_numpy(poses[ref + 1]), sample.next.ego_to_global)
        for j, frame in enumerate(reversed(sample.history), start=1):
            torch.testing.assert_close(torch.from_numpy(poses[ref - j]), frame.ego_to_global)
