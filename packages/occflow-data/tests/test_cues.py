"""Tests of the cue cache layout: atomic save, load, validity check, manifest."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from occflow_data import cues


def _flow_arrays(n=2, h=6, w=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    flow = (torch.randn(n, 2, h, w, generator=g) * 20).to(torch.float16)
    valid = torch.rand(n, h, w, generator=g) > 0.3
    return {"flow": flow.numpy(), "valid": valid.numpy()}


def test_save_load_roundtrip(tmp_path):
    arrays = _flow_arrays()
    path = cues.save_cue(tmp_path, "flow", "tok123", arrays)
    assert path == tmp_path / "flow" / "tok123.npz"
    loaded = cues.load_cue(tmp_path, "flow", "tok123")
    assert loaded["flow"].dtype == torch.float32
    assert torch.equal(loaded["flow"], torch.from_numpy(arrays["flow"]).float())
    assert torch.equal(loaded["valid"], torch.from_numpy(arrays["valid"]))
    assert cues.check_cue_file(path, "flow") is None
    assert cues.check_cue_file(path, "flow", num_cameras=2, image_hw=(6, 9)) is None
    assert "expected 3 cameras" in cues.check_cue_file(path, "flow", num_cameras=3)
    assert "image size" in cues.check_cue_file(path, "flow", image_hw=(6, 8))
    assert not list((tmp_path / "flow").glob(".*"))  # no temporary file left


def test_save_rejects_bad_arrays(tmp_path):
    a = _flow_arrays()
    with pytest.raises(ValueError, match="dtype float16"):
        cues.save_cue(tmp_path, "flow", "k", {"flow": a["flow"].astype(np.float32), "valid": a["valid"]})
    with pytest.raises(ValueError, match="needs arrays"):
        cues.save_cue(tmp_path, "flow", "k", {"flow": a["flow"]})
    with pytest.raises(ValueError, match="H=5"):
        cues.save_cue(tmp_path, "flow", "k", {"flow": a["flow"], "valid": a["valid"][:, :5]})
    bad = a["flow"].copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        cues.save_cue(tmp_path, "flow", "k", {"flow": bad, "valid": a["valid"]})
    with pytest.raises(ValueError, match="negative"):
        cues.save_cue(tmp_path, "depth", "k", {"depth": -np.ones((1, 2, 2), np.float16)})
    with pytest.raises(ValueError, match="cue: expected one of"):
        cues.save_cue(tmp_path, "optical", "k", a)
    with pytest.raises(ValueError, match="sample_key"):
        cues.save_cue(tmp_path, "flow", "../x", a)
    assert not (tmp_path / "flow").exists() or not list((tmp_path / "flow").iterdir())


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.95])
def test_truncated_file_is_detected(tmp_path, cut):
    path = cues.save_cue(tmp_path, "flow", "tok", _flow_arrays(h=40, w=50))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    reason = cues.check_cue_file(path, "flow")
    assert reason is not None and "tok.npz" in reason
    with pytest.raises(cues.CueFileError, match="tok.npz"):
        cues.load_cue(tmp_path, "flow", "tok")


def test_flipped_byte_is_detected(tmp_path):
    path = cues.save_cue(tmp_path, "depth", "tok", {"depth": np.full((1, 30, 40), 7.5, np.float16)})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.infolist()[0]
    # inside the member's data (past the local header and the .npy header)
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cues.check_cue_file(path, "depth") is not None


def test_missing_file(tmp_path):
    assert "not found" in cues.check_cue_file(tmp_path / "mask" / "x.npz", "mask")
    with pytest.raises(cues.CueFileError, match="not found"):
        cues.load_cue(tmp_path, "mask", "x")


def test_frame_cues_keys_and_required(tmp_path):
    a = _flow_arrays(n=3, h=4, w=5)
    cues.save_cue(tmp_path, "track", "s", a)
    cues.save_cue(tmp_path, "mask", "s", {"mask": a["valid"]})
    out = cues.frame_cues(tmp_path, "s", flow_cue="track")
    assert set(out) == {"flow", "flow_valid", "movable"}
    assert out["flow"].shape == (3, 2, 4, 5) and out["movable"].dtype == torch.bool
    assert set(cues.frame_cues(tmp_path, "s")) == {"movable"}  # no "flow" cue file
    with pytest.raises(cues.CueFileError, match="depth"):
        cues.frame_cues(tmp_path, "s", flow_cue="track", required=True)


def test_resize_cues_scales_flow():
    flow = torch.zeros(1, 2, 4, 8)
    flow[:, 0] = 4.0
    flow[:, 1] = -2.0
    valid = torch.ones(1, 4, 8, dtype=torch.bool)
    valid[0, 0, 0] = False
    depth = torch.arange(32, dtype=torch.float32).view(1, 4, 8)
    out = cues.resize_cues({"flow": flow, "flow_valid": valid, "lidar_depth": depth}, (2, 2))
    assert out["flow"].shape == (1, 2, 2, 2)
    assert torch.allclose(out["flow"][:, 0], torch.full((1, 2, 2), 1.0))  # 4 px * 2/8
    assert torch.allclose(out["flow"][:, 1], torch.full((1, 2, 2), -1.0))  # -2 px * 2/4
    assert out["flow_valid"].dtype == torch.bool
    assert set(out["lidar_depth"].flatten().tolist()) <= set(depth.flatten().tolist())  # no blending
    cropped = cues.resize_cues({"flow": flow}, (2, 4), crop=(0, 0, 2, 4))
    assert torch.allclose(cropped["flow"][:, 0], torch.full((1, 2, 4), 4.0))
    with pytest.raises(ValueError, match="crop"):
        cues.resize_cues({"flow": flow}, (2, 2), crop=(0, 0, 5, 4))


def test_manifest_update_and_conflicts(tmp_path):
    assert cues.read_manifest(tmp_path) is None
    m = cues.update_manifest(tmp_path, "nuscenes", "flow", estimator="opencv-dis",
                             settings={"preset": "medium"}, versions={"opencv": "4.11"})
    assert m["format"] == 1 and m["cues"]["flow"]["settings"] == {"preset": "medium"}
    cues.update_manifest(tmp_path, "nuscenes", "depth", estimator="lidar", settings={}, versions={})
    disk = json.loads((tmp_path / "manifest.json").read_text())
    assert set(disk["cues"]) == {"flow", "depth"} and disk["dataset"] == "nuscenes"
    # same settings again: fine (resume); different settings: refused
    cues.update_manifest(tmp_path, "nuscenes", "flow", estimator="opencv-dis",
                         settings={"preset": "medium"}, versions={"opencv": "4.12"})
    with pytest.raises(ValueError, match="refusing"):
        cues.update_manifest(tmp_path, "nuscenes", "flow", estimator="opencv-dis",
                             settings={"preset": "fast"}, versions={})
    with pytest.raises(ValueError, match="kitti"):
        cues.update_manifest(tmp_path, "kitti-odometry", "mask", estimator="x", settings={}, versions={})
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json"):
        cues.read_manifest(tmp_path)


def test_temporary_files_listed_never_and_removed(tmp_path):
    cues.save_cue(tmp_path, "mask", "a", {"mask": np.zeros((1, 2, 2), bool)})
    stale = tmp_path / "mask" / ".b.abcdef.tmp"
    stale.write_bytes(b"partial")
    assert [p.name for p in cues.list_cue_files(tmp_path, "mask")] == ["a.npz"]
    assert cues.remove_temporary_files(tmp_path) == [stale]
    assert not stale.exists()


def test_kitti_sample_key():
    assert cues.kitti_sample_key("0003", 12) == "0003_000012"
    assert cues.kitti_sample_key(8, 0) == "08_000000"
    with pytest.raises(ValueError, match="frame"):
        cues.kitti_sample_key("08", -1)
