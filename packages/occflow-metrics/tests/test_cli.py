"""The scoring CLI on a small Occ3D-layout folder built here (not by the synthetic-world writer)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from occflow_metrics import read_occ3d_scenes
from occflow_metrics._cli import main

TOKENS = ("tok-a", "tok-b", "tok-c")


def _scene(seed: int):
    rng = np.random.default_rng(seed)
    sem = np.full((200, 200, 16), 17, np.uint8)
    sem[:, :, :2] = 11
    sem[:, :30, :2] = 13
    sem[:, 185:, 2:10] = 15
    flow = np.zeros((200, 200, 16, 2), np.float32)
    for k in range(8):
        x, y = rng.integers(10, 180), rng.integers(50, 140)
        cls = (4, 10, 7)[k % 3]
        sem[x:x + 10, y:y + 5, 2:6] = cls
        flow[x:x + 10, y:y + 5, 2:6] = rng.normal(0, 4, 2)
    mask = rng.random((200, 200, 16)) < 0.8
    return sem, flow, mask


def _quat_z(yaw):
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


@pytest.fixture(scope="module")
def occ3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("occ3d")
    infos = {}
    for i, token in enumerate(TOKENS):
        sem, flow, mask = _scene(i)
        folder = root / "gts" / "scene-0061" / token
        folder.mkdir(parents=True)
        np.savez_compressed(folder / "labels.npz", semantics=sem, mask_camera=mask.astype(np.uint8),
                            mask_lidar=np.ones_like(mask, np.uint8), flow=flow)
        infos[token] = {"timestamp": 1000 + 500000 * i, "gt_path": f"gts/scene-0061/{token}/labels.npz",
                        "ego_pose": {"translation": [100.0 + 4.0 * i, 50.0 + 1.0 * i, 0.1 * i],
                                     "rotation": _quat_z(0.2 + 0.05 * i)},
                        "prev": TOKENS[i - 1] if i else "", "next": TOKENS[i + 1] if i < 2 else ""}
    # Listed out of time order on purpose: the reader sorts by timestamp.
    infos = dict(reversed(list(infos.items())))
    (root / "annotations.json").write_text(json.dumps({"train_split": [], "val_split": ["scene-0061"],
                                                       "scene_infos": {"scene-0061": infos}}))
    return root


def _write_preds(folder: Path, gt_root: Path, perturb: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    for token in TOKENS:
        with np.load(gt_root / "gts" / "scene-0061" / token / "labels.npz") as d:
            sem, flow = d["semantics"].copy(), d["flow"].copy()
        if perturb:
            sem = np.roll(sem, 3, axis=0)                     # 1.2 m shift along x
            sem[sem == 4] = 10                                # cars called trucks
            flow = np.roll(flow, 3, axis=0) * 1.5
        np.savez(folder / f"{token}.npz", semantics=sem, flow=flow)
    return folder


def test_annotations_are_read_in_time_order(occ3d):
    (scene,) = read_occ3d_scenes(occ3d, "val")
    assert scene.tokens == TOKENS
    assert scene.ego_to_global[1, :3, 3].tolist() == [104.0, 51.0, 0.1]
    assert read_occ3d_scenes(occ3d, "train") == []


def test_ground_truth_against_itself_scores_perfectly(occ3d, tmp_path, capsys):
    pred = _write_preds(tmp_path / "pred", occ3d)
    out = tmp_path / "res.json"
    assert main(["--gt", str(occ3d), "--pred", str(pred), "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "RayIoU@1" in printed and "MEAN" in printed
    res = json.loads(out.read_text())
    assert res["samples"] == 3 and res["variant"] == "semantic" and res["mave_available"]
    assert res["rayiou"]["RayIoU"] == 1.0 and res["rayiou"]["mAVE"] == 0.0
    assert res["rayiou"]["OccScore"] == 1.0
    assert res["voxel"]["mIoU"] == 1.0 and res["voxel"]["IoU_geo"] == 1.0
    assert res["rayiou"]["per_class"]["bus"] == [None, None, None]          # NaN (absent) written as null


def test_perturbed_copy_scores_lower_and_geo_forgives_the_class_swap(occ3d, tmp_path):
    pred = _write_preds(tmp_path / "pred", occ3d, perturb=True)
    results = {}
    for variant in ("semantic", "geo"):
        out = tmp_path / f"{variant}.json"
        assert main(["--gt", str(occ3d), "--pred", str(pred), "--variant", variant, "--origins", "window",
                     "--json", str(out), "--no-progress"]) == 0
        results[variant] = json.loads(out.read_text())["rayiou"]
    sem, geo = results["semantic"], results["geo"]
    assert 0.0 < sem["RayIoU"] < geo["RayIoU"] < 1.0
    assert sem["per_class"]["car"] == [0.0, 0.0, 0.0]
    assert geo["mAVE"] > 0.0
    assert sem["RayIoU@1"] < sem["RayIoU@2"] < sem["RayIoU@4"]


def test_missing_and_malformed_predictions_are_named(occ3d, tmp_path, capsys):
    pred = _write_preds(tmp_path / "pred", occ3d)
    (pred / "tok-b.npz").unlink()
    assert main(["--gt", str(occ3d), "--pred", str(pred), "--no-progress"]) == 2
    assert str(pred / "tok-b.npz") in capsys.readouterr().err
    np.savez(pred / "tok-b.npz", semantics=np.zeros((200, 200, 16), np.int64))
    assert main(["--gt", str(occ3d), "--pred", str(pred), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(pred / "tok-b.npz") in err and "uint8" in err
    np.savez(pred / "tok-b.npz", semantics=np.zeros((200, 200, 8), np.uint8))
    assert main(["--gt", str(occ3d), "--pred", str(pred), "--no-progress"]) == 2
    assert "tok-b.npz: semantics must have shape [200, 200, 16]" in capsys.readouterr().err
    np.savez(pred / "tok-b.npz", semantics=np.zeros((200, 200, 16), np.uint8),
             flow=np.zeros((200, 200, 16, 3), np.float32))
    assert main(["--gt", str(occ3d), "--pred", str(pred), "--no-progress"]) == 2
    assert "tok-b.npz: flow must have shape" in capsys.readouterr().err


def test_module_entry_point_exits_2_with_the_file_name(occ3d, tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    cmd = [sys.executable, "-m", "occflow_metrics", "--gt", str(occ3d), "--pred", str(empty)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "3 prediction file(s) missing" in proc.stderr and str(empty / "tok-a.npz") in proc.stderr
