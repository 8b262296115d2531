"""The nuScenes writer: nuscenes-devkit loads the output and agrees with the world."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.splits import create_splits_scenes

from occflow_data.synth import make_world
from occflow_data.synth._geometry import apply, invert_pose
from occflow_data.synth._nuscenes import KEYFRAME_DT, scene_seed

TABLES = (
    "attribute",
    "calibrated_sensor",
    "category",
    "ego_pose",
    "instance",
    "log",
    "map",
    "sample",
    "sample_annotation",
    "sample_data",
    "scene",
    "sensor",
    "visibility",
)


@pytest.fixture(scope="module")
def nusc(tiny_nuscenes):
    root, _, _ = tiny_nuscenes
    return NuScenes("v1.0-mini", str(root), verbose=False)


def test_all_tables_and_splits(tiny_nuscenes, nusc):
    root, cfg, _ = tiny_nuscenes
    for name in TABLES:
        assert (root / "v1.0-mini" / f"{name}.json").is_file(), name
    names = [s["name"] for s in nusc.scene]
    splits = create_splits_scenes()
    assert names[0] in splits["mini_train"] and names[1] in splits["mini_val"]
    assert len(nusc.sample) == cfg.scenes * cfg.keyframes
    ann = json.loads((root / "annotations.json").read_text())
    assert ann["val_split"] == [names[1]]
    for scene in nusc.scene:
        assert len(ann["scene_infos"][scene["name"]]) == cfg.keyframes


def test_sample_data_chain_and_files(tiny_nuscenes, nusc):
    root, cfg, _ = tiny_nuscenes
    sample = nusc.sample[0]
    for channel in ("CAM_FRONT", "LIDAR_TOP"):
        sd = nusc.get("sample_data", sample["data"][channel])
        assert sd["is_key_frame"]
        n, keys = 0, 0
        while True:
            assert (root / sd["filename"]).is_file()
            n += 1
            keys += sd["is_key_frame"]
            if not sd["next"]:
                break
            nxt = nusc.get("sample_data", sd["next"])
            assert nxt["timestamp"] > sd["timestamp"] and nxt["prev"] == sd["token"]
            sd = nxt
        sweeps = cfg.camera_sweeps if channel == "CAM_FRONT" else cfg.lidar_sweeps
        assert keys == cfg.keyframes
        assert n == cfg.keyframes + (cfg.keyframes - 1) * sweeps
    pts = np.fromfile(root / nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["filename"], np.float32)
    assert pts.size % 5 == 0 and pts.size > 0


def test_ego_pose_and_box_velocity_agree_with_world(tiny_nuscenes, nusc):
    _, cfg, _ = tiny_nuscenes
    scene = nusc.scene[0]
    world = make_world(scene_seed(cfg.seed, 0), (cfg.keyframes - 1) * KEYFRAME_DT + 0.6, cfg.world)
    g = world.global_from_map
    sample = nusc.get("sample", scene["first_sample_token"])
    k = 0
    checked = 0
    while True:
        t = k * KEYFRAME_DT
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        expect = g @ world.ego_pose(t)
        np.testing.assert_allclose(pose["translation"], expect[:3, 3], atol=1e-6)
        yaw = np.arctan2(expect[1, 0], expect[0, 0])
        q = pose["rotation"]
        np.testing.assert_allclose(2 * np.arctan2(q[3], q[0]), yaw, atol=1e-6)
        pos, _, vel = world.agent_states(t)
        for ann_tok in sample["anns"]:
            ann = nusc.get("sample_annotation", ann_tok)
            inst = next(
                i
                for i, a in enumerate(world.agents)
                if _inst_token(cfg.seed, 0, a.instance) == ann["instance_token"]
            )
            agent = world.agents[inst]
            centre = pos[inst] + np.array([0, 0, agent.size[2] / 2])
            np.testing.assert_allclose(ann["translation"], apply(g, centre), atol=1e-6)
            v = nusc.box_velocity(ann_tok)
            _, yaws, vels = zip(
                *(world.agents[inst].trajectory.state(t + dt) for dt in (-0.5, 0.0, 0.5)), strict=True
            )
            speeds = [float(np.linalg.norm(x)) for x in vels]
            smooth = abs(speeds[1] - 0.5 * (speeds[0] + speeds[2])) < 1e-6 and np.ptp(yaws) < 1e-6
            if smooth and np.all(np.isfinite(v)) and ann["prev"] and ann["next"]:
                v_true = g[:3, :3] @ vel[inst]
                np.testing.assert_allclose(v[:2], v_true[:2], atol=1e-3)
                checked += 1
        if not sample["next"]:
            break
        sample = nusc.get("sample", sample["next"])
        k += 1
    assert checked > 0


def _inst_token(seed, si, instance):
    from occflow_data.synth._io import token

    return token("instance", seed, si, instance)


def test_get_sample_data_boxes_project_into_image(tiny_nuscenes, nusc):
    root, _, _ = tiny_nuscenes
    sample = nusc.sample[1]
    seen = 0
    for ch in ("CAM_FRONT", "CAM_BACK", "CAM_FRONT_LEFT"):
        path, boxes, k = nusc.get_sample_data(sample["data"][ch])
        assert (root / path).is_file() if not path.startswith("/") else True
        for box in boxes:
            c = box.center
            assert c[2] > 0  # in front of the camera frame it was returned in
            seen += 1
    assert seen > 0
    # World-to-sensor chain: the LiDAR origin seen through calibrated_sensor + ego_pose.
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    assert np.isclose(cs["translation"][2], 1.84)
    assert invert_pose is not None


def _record_pose(rec) -> np.ndarray:
    from pyquaternion import Quaternion

    t = np.eye(4)
    t[:3, :3] = Quaternion(rec["rotation"]).rotation_matrix
    t[:3, 3] = rec["translation"]
    return t


def test_lidar_through_written_calibration_hits_rendered_depth(tiny_nuscenes, nusc):
    from occflow_data.synth import Renderer, nuscenes_rig

    root, cfg, _ = tiny_nuscenes
    scene = nusc.scene[0]
    world = make_world(scene_seed(cfg.seed, 0), (cfg.keyframes - 1) * KEYFRAME_DT + 0.6, cfg.world)
    rig = nuscenes_rig(cfg.height, cfg.width, cfg.lidar_azimuth_bins)
    sample = nusc.get("sample", nusc.get("sample", scene["first_sample_token"])["next"])
    frame = Renderer(world).render_cameras(KEYFRAME_DT, rig.cameras)
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pts = np.fromfile(root / sd["filename"], np.float32).reshape(-1, 5)[:, :3].astype(np.float64)
    lidar_to_global = _record_pose(nusc.get("ego_pose", sd["ego_pose_token"])) @ _record_pose(
        nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    )
    good, total = 0, 0
    for i, cam in enumerate(rig.cameras):
        csd = nusc.get("sample_data", sample["data"][cam.name])
        cs = nusc.get("calibrated_sensor", csd["calibrated_sensor_token"])
        cam_to_global = _record_pose(nusc.get("ego_pose", csd["ego_pose_token"])) @ _record_pose(cs)
        pc = apply(invert_pose(cam_to_global) @ lidar_to_global, pts)
        k = np.array(cs["camera_intrinsic"])
        front = pc[:, 2] > 1.0
        uvw = pc[front] @ k.T
        u = np.round(uvw[:, 0] / uvw[:, 2]).astype(int)
        v = np.round(uvw[:, 1] / uvw[:, 2]).astype(int)
        inside = (u >= 0) & (v >= 0) & (u < csd["width"]) & (v < csd["height"])
        z = pc[front, 2][inside]
        d = frame.depth[i][v[inside], u[inside]]
        good += int(np.sum(np.abs(d - z) < 0.05 * z + 0.1))
        total += int(inside.sum())
    assert total > 300
    assert good / total > 0.75
