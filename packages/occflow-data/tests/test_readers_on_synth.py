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
    NuScenesSequences,
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
    # Workaround: the synthetic writer's oracle flow can overflow float16 (inf) on invalid pixels,
    # which the cue-cache loader rightly rejects; zero those (they are invalid anyway).
    from occflow_data.cues import load_cue, save_cue

    for path in sorted((root / "gt_cues" / "flow").glob("*.npz")):
        with np.load(path) as data:
            flow, valid = data["flow"], data["valid"]
        if not np.isfinite(flow).all():
            bad = ~np.isfinite(flow).all(axis=1)
            flow = np.where(np.isfinite(flow), flow, 0).astype(np.float16)
            save_cue(root / "gt_cues", "flow", path.stem, {"flow": flow, "valid": valid & ~bad})
        load_cue(root / "gt_cues", "flow", path.stem)
    return root


def _reader(root, image=FULL, **cfg):
    config = SequenceConfig(image=image, history=1, occ_root=root, cue_cache=root / "gt_cues",
                            cues=("flow", "mask", "depth"), **cfg)
    return NuScenesSequences(root, SCENES, config, version="v1.0-mini", verbose=False)


def test_lidar_through_the_calibration_matches_the_rendered_depth(synth_nusc):
    ds = _reader(synth_nusc)
    for index in range(len(ds)):
        cur = ds[index].current
        rendered = cur.cues["lidar_depth"]  # the world's z-depth maps (oracle cue)
        projected = lidar_depth_maps(cur.lidar, cur.loss_intrinsics, cur.cam_to_ego, rendered.shape[-2:],
                                     max_depth=500.0)
        both = (projected > 0) & (rendered > 0)
        assert both.sum() > 1000
        rel = (projected[both] - rendered[both]).abs() / rendered[both]
        # LiDAR points and pixel centres differ by up to half a pixel: tiny except at depth edges.
        assert rel.median() < 0.01
        assert (rel < 0.02).float().mean() > 0.8
        # The check can fail: a camera swapped for its neighbour no longer matches.
        swapped = lidar_depth_maps(cur.lidar, cur.loss_intrinsics, cur.cam_to_ego.roll(1, 0),
                                   rendered.shape[-2:], max_depth=500.0)
        both = (swapped > 0) & (rendered > 0)
        assert ((swapped[both] - rendered[both]).abs() / rendered[both]).median() > 0.05


def test_history_ego_motion_matches_the_world_poses(synth_nusc):
    infos = json.loads((synth_nusc / "annotations.json").read_text())["scene_infos"]

    def pose(scene, token):
        rec = infos[scene][token]["ego_pose"]
        w, x, y, z = rec["rotation"]
        m = np.eye(4)
        m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
        m[:3, 3] = rec["translation"]
        return m

    ds = _reader(synth_nusc)
    moved = 0.0
    for index in range(len(ds)):
        s = ds[index]
        scene = s.meta["scene"]
        for frame, token in zip([*s.history, s.next], [*s.meta["history_tokens"], s.meta["next_token"]],
                                strict=True):
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
