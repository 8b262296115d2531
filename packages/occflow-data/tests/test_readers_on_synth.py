"""The readers on datasets written by the synthetic world (occflow_data.synth).

Generating a world costs seconds per keyframe on this CPU, so these tests are marked slow;
the geometric checks also run, exactly, on the tiny hand-written fixtures of the default suite.
Run with ``uv run pytest packages/occflow-data -m slow``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from occflow_data import (
    ImageConfig,
    KittiTrackingSequences,
    NuScenesSequences,
    SemanticKittiSequences,
    SequenceConfig,
    collate_samples,
    lidar_depth_maps,
    relative_pose,
)

pytestmark = pytest.mark.slow

SCENES = ["scene-0061", "scene-0103"]
FULL = ImageConfig(input_scale=1.0, input_size=None, loss_scale=1.0, loss_size=None)
HALF = ImageConfig(input_scale=1.0, input_size=None, loss_scale=0.5, loss_size=None)


@pytest.fixture(scope="session")
def synth_nusc(tmp_path_factory):
    from occflow_data.synth import NuScenesConfig, write_nuscenes

    root = tmp_path_factory.mktemp("synth_nusc_readers")
    cfg = NuScenesConfig(scenes=2, keyframes=4, seed=3, height=72, width=128, camera_sweeps=2, lidar_sweeps=1)
    write_nuscenes(root, cfg)
    from occflow_data.cues import load_cue

    for path in sorted((root / "gt_cues" / "flow").glob("*.npz")):  # every oracle flow file loads
        load_cue(root / "gt_cues", "flow", path.stem)
    return root


def _reader(root, image=FULL, **cfg):
    config = SequenceConfig(
        image=image,
        history=1,
        occ_root=root,
        cue_cache=root / "gt_cues",
        cues=("flow", "mask", "depth"),
        **cfg,
    )
    return NuScenesSequences(root, SCENES, config, version="v1.0-mini", verbose=False)


def test_lidar_through_the_calibration_matches_the_rendered_depth(synth_nusc):
    ds = _reader(synth_nusc)
    for index in range(len(ds)):
        cur = ds[index].current
        rendered = cur.cues["lidar_depth"]  # the world's z-depth maps (oracle cue)
        projected = lidar_depth_maps(
            cur.lidar, cur.loss_intrinsics, cur.cam_to_ego, rendered.shape[-2:], max_depth=500.0
        )
        both = (projected > 0) & (rendered > 0)
        assert both.sum() > 1000
        rel = (projected[both] - rendered[both]).abs() / rendered[both]
        # LiDAR points and pixel centres differ by up to half a pixel: tiny except at depth edges.
        assert rel.median() < 0.01
        assert (rel < 0.02).float().mean() > 0.8
        # The check can fail: a camera swapped for its neighbour no longer matches.
        swapped = lidar_depth_maps(
            cur.lidar, cur.loss_intrinsics, cur.cam_to_ego.roll(1, 0), rendered.shape[-2:], max_depth=500.0
        )
        both = (swapped > 0) & (rendered > 0)
        assert ((swapped[both] - rendered[both]).abs() / rendered[both]).median() > 0.05


def test_history_ego_motion_matches_the_world_poses(synth_nusc):
    infos = json.loads((synth_nusc / "annotations.json").read_text())["scene_infos"]

    def pose(scene, token):
        rec = infos[scene][token]["ego_pose"]
        w, x, y, z = rec["rotation"]
        m = np.eye(4)
        m[:3, :3] = [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
        m[:3, 3] = rec["translation"]
        return m

    ds = _reader(synth_nusc)
    moved = 0.0
    for index in range(len(ds)):
        s = ds[index]
        scene = s.meta["scene"]
        for frame, token in zip(
            [*s.history, s.next], [*s.meta["history_tokens"], s.meta["next_token"]], strict=True
        ):
            expected = np.linalg.inv(pose(scene, s.meta["token"])) @ pose(scene, token)
            got = relative_pose(frame.ego_to_global, s.current.ego_to_global).numpy()
            np.testing.assert_allclose(got, expected, atol=1e-6)
            moved = max(moved, float(np.linalg.norm(expected[:3, 3])))
    assert moved > 1.0  # the ego really drives


def test_aux_frames_follow_the_gaussian(synth_nusc):
    ds = _reader(synth_nusc, aux_mean=1.0, aux_sigma=1.5)
    cfg = ds.config
    for index in range(len(ds)):
        frames, prob = ds.aux_distribution(index)
        cur = ds.frame_info(index)
        dist = np.array([np.linalg.norm(f.ego_to_global[:3, 3] - cur.ego_to_global[:3, 3]) for f in frames])
        assert len(frames) >= 2 and any(not f.is_keyframe for f in frames)  # sweeps are candidates
        assert np.all((dist >= cfg.aux_range[0]) & (dist <= cfg.aux_range[1]))
        weight = np.exp(-0.5 * ((dist - cfg.aux_mean) / cfg.aux_sigma) ** 2)
        np.testing.assert_allclose(prob, weight / weight.sum())
        draws = 2000
        keys = [ds.draw_aux(index, epoch=e).key for e in range(draws)]
        counts = np.array([keys.count(f.key) for f in frames])
        sigma = np.sqrt(draws * prob * (1 - prob))
        assert np.all(np.abs(counts - draws * prob) <= 3.5 * sigma + 1)


def test_cues_ground_truth_and_batches(synth_nusc):
    full = _reader(synth_nusc)
    half = _reader(synth_nusc, image=HALF)
    a, b = full[0].current, half[0].current
    assert b.cues["flow"].shape == (6, 2, 36, 64) and b.loss_images.shape == (6, 3, 36, 64)
    # flow vectors scale with the image: compare the mean valid flow of the two resolutions
    fa = a.cues["flow"].permute(0, 2, 3, 1)[a.cues["flow_valid"]]
    fb = b.cues["flow"].permute(0, 2, 3, 1)[b.cues["flow_valid"]]
    assert fa.abs().mean() > 0.5
    torch.testing.assert_close(fb.abs().mean(), fa.abs().mean() * 0.5, rtol=0.1, atol=0.05)
    gt = full[0].gt
    assert gt.occupancy.shape == (200, 200, 16) and int(gt.occupancy.max()) <= 17
    assert (gt.occupancy != 17).any() and gt.flow is not None
    batch = collate_samples([full[i] for i in range(len(full))])
    assert batch.current.images.shape[:2] == (len(full), 6) and batch.current.lidar_mask.any(1).all()


def _open(root, **cfg):
    config = SequenceConfig(image=FULL, **cfg)
    return NuScenesSequences(root, SCENES, config, version="v1.0-mini", verbose=False)


def test_bad_data_on_the_synthetic_world(synth_nusc, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_nusc, root, ignore=shutil.ignore_patterns("sweeps", "gt_cues"))
    with pytest.raises(FileNotFoundError, match="version folder not found"):
        NuScenesSequences(root, SCENES, SequenceConfig(image=FULL), version="v1.0-trainval", verbose=False)
    gt_file = next((root / "gts" / "scene-0061").rglob("labels.npz"))
    gt_file.unlink()
    with pytest.raises(FileNotFoundError, match=r"Occ3D ground truth not found: .*labels.npz"):
        ds = _open(root, history=1, occ_root=root, aux_prev=False)
        [ds[i] for i in range(len(ds))]
    with pytest.raises(ValueError, match="has 4 keyframes, but history=3"):
        _open(root, history=3)
    ds = _open(root, history=1)
    with pytest.raises(FileNotFoundError, match=r"image not found: .*sweeps/CAM_"):
        [ds[i] for i in range(len(ds))]  # the auxiliary frames are sweeps, not copied


# ------------------------------------------------------------------------------------ KITTI layouts
KITTI_CFG = {"sequences": 1, "frames": 8, "seed": 5, "height": 94, "width": 310, "voxel_stride": 4}


@pytest.fixture(scope="session")
def synth_kitti(tmp_path_factory):
    from occflow_data.synth._kitti import KittiConfig, write_kitti_odometry, write_kitti_tracking

    odo = tmp_path_factory.mktemp("synth_kitti_odometry")
    trk = tmp_path_factory.mktemp("synth_kitti_tracking")
    write_kitti_odometry(odo, KittiConfig(**KITTI_CFG))
    write_kitti_tracking(trk, KittiConfig(**KITTI_CFG))
    return odo, trk


@pytest.fixture(scope="session")
def kitti_world():
    """The world behind sequence 0 of the KITTI fixtures, its rig and a renderer (for depth maps)."""
    from occflow_data.synth import Renderer, WorldConfig, kitti_rig, make_world
    from occflow_data.synth._kitti import FRAME_DT, sequence_seed

    world = make_world(
        sequence_seed(KITTI_CFG["seed"], 0), KITTI_CFG["frames"] * FRAME_DT + 0.5, WorldConfig()
    )
    rig = kitti_rig(KITTI_CFG["height"], KITTI_CFG["width"], 1800)
    return world, rig, Renderer(world, "cpu"), FRAME_DT


def _check_kitti_reader(ds, kitti_world):
    world, rig, renderer, dt = kitti_world
    velo = rig.lidar.sensor_to_ego

    def velo_pose(t):
        return world.ego_pose(t) @ velo

    for index in (0, len(ds) - 1):
        s = ds[index]
        t = s.current.timestamp
        frame_index = int(s.meta["token"].rsplit("_", 1)[1])
        assert t == pytest.approx(frame_index * dt)
        # ego motion between the history frames and the current frame = the world's
        for frame in s.history:
            expected = np.linalg.inv(velo_pose(t)) @ velo_pose(frame.timestamp)
            got = relative_pose(frame.ego_to_global, s.current.ego_to_global).numpy()
            np.testing.assert_allclose(got[:3, :3], expected[:3, :3], atol=2e-5)
            np.testing.assert_allclose(got[:3, 3], expected[:3, 3], atol=2e-3)
        # LiDAR through the sample's calibration = the world's rendered depth
        rendered = torch.from_numpy(renderer.render_cameras(t, rig.cameras).depth[:1]).float()
        cur = s.current
        projected = lidar_depth_maps(
            cur.lidar, cur.loss_intrinsics[:1], cur.cam_to_ego[:1], rendered.shape[-2:], max_depth=500.0
        )
        both = (projected > 0) & (rendered > 0)
        assert both.sum() > 200
        rel = (projected[both] - rendered[both]).abs() / rendered[both]
        assert rel.median() < 0.01 and (rel < 0.03).float().mean() > 0.8


def test_semantic_kitti_on_the_synthetic_world(synth_kitti, kitti_world):
    odo, _ = synth_kitti
    ds = SemanticKittiSequences(odo, ["00"], SequenceConfig(image=FULL, history=2), verbose=False)
    assert len(ds) == KITTI_CFG["frames"] - 3
    _check_kitti_reader(ds, kitti_world)


def test_semantic_kitti_ground_truth_holds_the_lidar_hits(synth_kitti):
    odo, _ = synth_kitti
    ds = SemanticKittiSequences(
        odo, ["00"], SequenceConfig(image=FULL, history=1, load_gt=True), verbose=False
    )
    assert [s.meta["token"] for s in ds] == ["00_000004"]  # voxels at 0 and 4; frame 0 has no history
    assert ds.summary.skipped_no_gt == KITTI_CFG["frames"] - 3
    s = ds[0]
    gt = s.gt
    pts = s.current.lidar
    inside = gt.grid.contains(pts)
    cells = gt.grid.world_to_grid(pts[inside], "cell").round().long()
    cells = cells.clamp(torch.zeros(3, dtype=torch.long), torch.tensor(gt.grid.cells) - 1)
    occupied = gt.occupancy != 17
    # a hit lies on a surface: in an occupied voxel or next to one
    near = torch.nn.functional.max_pool3d(occupied[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    hit = near[cells[:, 0], cells[:, 1], cells[:, 2]]
    assert inside.sum() > 500 and hit.float().mean() > 0.95
    assert gt.mask_lidar[cells[:, 0], cells[:, 1], cells[:, 2]].float().mean() > 0.95


def test_kitti_tracking_on_the_synthetic_world(synth_kitti, kitti_world):
    _, trk = synth_kitti
    ds = KittiTrackingSequences(
        trk, "all", SequenceConfig(image=FULL, history=2), cameras=("image_02", "image_03"), verbose=False
    )
    assert ds.scenes == ["0000"] and len(ds) == KITTI_CFG["frames"] - 3
    _check_kitti_reader(ds, kitti_world)
    baseline = torch.linalg.norm(ds[0].current.cam_to_ego[0, :3, 3] - ds[0].current.cam_to_ego[1, :3, 3])
    assert baseline.item() == pytest.approx(0.54, abs=1e-4)
