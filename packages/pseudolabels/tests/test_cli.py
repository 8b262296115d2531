"""The cue cache CLI on a tiny KITTI-odometry layout: values, resume, verify, kill, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import pseudolabels as pl
from occflow_data import cues
from pseudolabels._cli import main


def _run(cue, root, out, *extra):
    return main(
        [cue, "--dataset", "kitti-odometry", "--root", str(root), "--out", str(out), "--no-progress", *extra]
    )


def _arrays(cache, cue):
    out = {}
    for path in cues.list_cue_files(cache, cue):
        with np.load(path) as z:
            out[path.name] = {k: z[k] for k in z.files}
    return out


def _same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for k in a[name]:
            assert np.array_equal(a[name][k], b[name][k]), (name, k)


def test_depth_and_disparity_values(kitti_toy, tmp_path):
    assert _run("depth", kitti_toy, tmp_path) == 0
    assert _run("disparity", kitti_toy, tmp_path) == 0
    files = cues.list_cue_files(tmp_path, "depth")
    assert [p.stem for p in files] == ["00_000000", "00_000001", "00_000002", "00_000003"]
    for i, stem in enumerate(p.stem for p in files):
        d = cues.load_cue(tmp_path, "depth", stem)["depth"]
        assert d.shape == (1, 96, 160)
        known = d > 0
        assert known.sum() > 500
        # the wall is 10 m ahead of the Velodyne at frame 0 and the camera sits at the Velodyne
        assert torch.allclose(d[known], torch.full_like(d[known], 10.0 - 0.3 * i), atol=1e-2)
        disp = cues.load_cue(tmp_path, "disparity", stem)["disparity"]
        assert torch.equal(disp > 0, known)
        assert torch.allclose(disp[known], 128.0 * 0.5327 / d[known], rtol=1e-3)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["dataset"] == "kitti-odometry"
    assert manifest["cues"]["depth"]["estimator"] == "lidar-nearest"
    assert manifest["cues"]["disparity"]["settings"]["baseline"] == pytest.approx(0.5327)
    assert manifest["cues"]["depth"]["versions"]["pseudolabels"] == pl.__version__


def test_flow_cue_against_geometry(kitti_toy, tmp_path, camera_motion_fn):
    """The toy drives 0.3 m toward a wall 10 m ahead: exact flow from the rigid motion."""
    assert _run("flow", kitti_toy, tmp_path) == 0
    files = cues.list_cue_files(tmp_path, "flow")
    assert len(files) == 3  # the last frame has no next keyframe
    k = torch.tensor([[128.0, 0, 79.5], [0, 128.0, 47.5], [0, 0, 1]], dtype=torch.float64)
    for i in range(3):
        got = cues.load_cue(tmp_path, "flow", f"00_{i:06d}")
        gt, _ = pl.rigid_flow(torch.full((96, 160), 10.0 - 0.3 * i), k, camera_motion_fn(0.3, 0.0))
        err = (got["flow"][0] - gt).norm(dim=0)
        valid = got["valid"][0]
        assert valid.float().mean() > 0.8
        assert err[valid].mean() < 0.3


def test_resume_produces_the_same_cache(kitti_toy, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert _run("track", kitti_toy, full) == 0
    assert _run("track", kitti_toy, part, "--limit", "1") == 0
    assert len(cues.list_cue_files(part, "track")) == 1
    # what a killed run can leave: a temporary file; and a file damaged outside the writer
    (part / "track" / ".00_000001.deadbeef.tmp").write_bytes(b"partial")
    _run("track", kitti_toy, part, "--limit", "2")
    victim = part / "track" / "00_000001.npz"
    victim.write_bytes(victim.read_bytes()[:100])
    assert _run("track", kitti_toy, part) == 0
    _same(_arrays(full, "track"), _arrays(part, "track"))
    assert not list((part / "track").glob(".*"))


def test_verify_detects_truncated_file_and_rerun_regenerates(kitti_toy, tmp_path, capsys):
    assert _run("flow", kitti_toy, tmp_path) == 0
    before = _arrays(tmp_path, "flow")
    victim = tmp_path / "flow" / "00_000001.npz"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    capsys.readouterr()
    assert main(["verify", "--out", str(tmp_path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "1 bad" in out and "00_000001.npz" in out
    assert victim.exists()  # reported, not deleted without --delete
    assert main(["verify", "--out", str(tmp_path), "--delete", "--no-progress"]) == 1
    assert not victim.exists()
    # with the dataset given, verify lists the missing file
    assert (
        main(
            [
                "verify",
                "--out",
                str(tmp_path),
                "--dataset",
                "kitti-odometry",
                "--root",
                str(kitti_toy),
                "--no-progress",
            ]
        )
        == 1
    )
    assert "MISSING" in capsys.readouterr().out
    assert _run("flow", kitti_toy, tmp_path) == 0
    _same(before, _arrays(tmp_path, "flow"))
    assert (
        main(
            [
                "verify",
                "--out",
                str(tmp_path),
                "--dataset",
                "kitti-odometry",
                "--root",
                str(kitti_toy),
                "--no-progress",
            ]
        )
        == 0
    )


def test_mask_cue_on_static_scene(kitti_toy, tmp_path):
    assert _run("flow", kitti_toy, tmp_path) == 0
    assert _run("mask", kitti_toy, tmp_path) == 0
    for path in cues.list_cue_files(tmp_path, "mask"):
        m = cues.load_cue(tmp_path, "mask", path.stem)["mask"]
        assert m.float().mean() < 0.02  # nothing moves in the toy world
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["cues"]["mask"]["settings"]["flow"] == "flow"
    with pytest.raises(ValueError, match="boxes.*kitti-odometry"):
        from pseudolabels._pipeline import CueConfig, DatasetConfig, make_cues

        report = make_cues(
            DatasetConfig("kitti-odometry", str(kitti_toy)),
            CueConfig("mask", mask_method="boxes"),
            tmp_path / "boxes",
            progress=False,
        )
        raise ValueError(report.errors[0])


def test_changed_settings_are_refused(kitti_toy, tmp_path):
    assert _run("flow", kitti_toy, tmp_path, "--limit", "1") == 0
    with pytest.raises(ValueError, match="refusing"):
        _run("flow", kitti_toy, tmp_path, "--preset", "fast")


def test_missing_raft_weights_cli(kitti_toy, tmp_path):
    missing = tmp_path / "raft_small.pth"
    with pytest.raises(FileNotFoundError, match="raft_small.pth"):
        _run("flow", kitti_toy, tmp_path, "--estimator", "raft", "--raft-weights", str(missing))
    assert not (tmp_path / "flow").exists()


@pytest.mark.slow
def test_killed_run_leaves_no_corrupt_file(tmp_path, kitti_toy_factory):
    """SIGKILL a real run while it writes, then resume: every file valid, same as a clean run."""
    root = kitti_toy_factory(tmp_path / "data", frames=16)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "pseudolabels",
        "track",
        "--dataset",
        "kitti-odometry",
        "--root",
        str(root),
        "--no-progress",
    ]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline and len(cues.list_cue_files(killed, "track")) < 2 and proc.poll() is None
    ):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = cues.list_cue_files(killed, "track")
    assert 1 <= len(done) < 15, "the run was not caught mid-way"
    for path in done:
        assert cues.check_cue_file(path, "track") is None
    assert _run("track", root, killed) == 0
    clean = tmp_path / "clean"
    assert _run("track", root, clean) == 0
    _same(_arrays(clean, "track"), _arrays(killed, "track"))
    shutil.rmtree(tmp_path / "data")


@pytest.mark.slow
def test_two_workers_match_one(kitti_toy, tmp_path):
    assert _run("flow", kitti_toy, tmp_path / "one") == 0
    assert _run("flow", kitti_toy, tmp_path / "two", "--workers", "2") == 0
    _same(_arrays(tmp_path / "one", "flow"), _arrays(tmp_path / "two", "flow"))


def test_geometric_mask_uses_each_frames_camera_pose(tmp_path):
    """nuScenes readers fold the per-camera ego motion into ``cam_to_ego`` of each frame: the
    mask must take the camera pose of t+1 from the next frame. A static wall and one moving patch,
    with the camera motion only in ``cam_to_ego``."""
    from types import SimpleNamespace

    from pseudolabels._pipeline import CueConfig, DatasetConfig, _Work

    h, w = 48, 64
    k = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])
    c2e_t = np.array([[0, 0, 1, 0.0], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1]])
    c2e_t1 = c2e_t.copy()
    c2e_t1[0, 3] = 1.0  # 1 m further along ego x at the camera's own timestamp
    info = SimpleNamespace(
        key="t", image_paths=("a.jpg",), intrinsics=k[None], cam_to_ego=c2e_t[None], ego_to_global=np.eye(4)
    )
    nxt = SimpleNamespace(
        key="t1", image_paths=("b.jpg",), intrinsics=k[None], cam_to_ego=c2e_t1[None], ego_to_global=np.eye(4)
    )
    motion = torch.linalg.inv(torch.from_numpy(c2e_t1)) @ torch.from_numpy(c2e_t)
    depth = torch.full((h, w), 8.0)
    flow, _ = pl.rigid_flow(depth, torch.from_numpy(k), motion)
    flow[:, 10:30, 20:40] += torch.tensor([6.0, 0.0]).view(2, 1, 1)  # a patch moving right
    cues.save_cue(
        tmp_path, "flow", "t", {"flow": flow[None].half().numpy(), "valid": np.ones((1, h, w), bool)}
    )
    sparse = torch.zeros(h, w)
    sparse[::4] = depth[::4]
    cues.save_cue(tmp_path, "depth", "t", {"depth": sparse[None].half().numpy()})
    reader = SimpleNamespace(frame_info=lambda i: info, next_frame_info=lambda i: nxt)
    work = _Work(DatasetConfig("nuscenes", str(tmp_path)), CueConfig("mask", mask_flow="flow"), str(tmp_path))
    mask = torch.from_numpy(work.geometric_masks(reader, 0, info, [(h, w)])["mask"][0])
    patch = torch.zeros(h, w, dtype=torch.bool)
    patch[10:30, 20:40] = True
    assert ((mask & patch).sum() / (mask | patch).sum()) > 0.8
