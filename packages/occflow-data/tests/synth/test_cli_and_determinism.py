"""The CLI's safety rules and reproducibility of the written files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from occflow_data.synth import MARKER, NuScenesConfig, write_nuscenes
from occflow_data.synth._cli import main
from occflow_data.synth._io import atomic_dir


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path):
    cfg = NuScenesConfig(
        scenes=1,
        keyframes=2,
        seed=4,
        height=32,
        width=56,
        camera_sweeps=1,
        lidar_sweeps=1,
        lidar_azimuth_bins=180,
    )
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_nuscenes(tmp_path / name, cfg)
    da, db = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert len(da) > 20 and da == db
    (tmp_path / "c").mkdir()
    write_nuscenes(tmp_path / "c", NuScenesConfig(**{**cfg.__dict__, "seed": 5}))
    dc = _digest(tmp_path / "c")
    changed = [k for k in da if k.endswith(".jpg") and dc.get(k) != da[k]]
    assert changed or set(dc) != set(da)


def test_cli_refuses_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    rc = main(["--layout", "nuscenes", "--out", str(out), "--scenes", "1", "--frames", "2"])
    assert rc == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "x"


def test_cli_writes_atomically(tmp_path):
    out = tmp_path / "kitti"
    rc = main(
        [
            "--layout",
            "kitti-tracking",
            "--out",
            str(out),
            "--scenes",
            "1",
            "--frames",
            "2",
            "--height",
            "24",
            "--width",
            "64",
        ]
    )
    assert rc == 0
    assert (out / MARKER).is_file() and (out / "training" / "label_02" / "0000.txt").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["kitti"]  # no temporary folders left
    rc = main(
        [
            "--layout",
            "kitti-tracking",
            "--out",
            str(out),
            "--scenes",
            "1",
            "--frames",
            "2",
            "--height",
            "24",
            "--width",
            "64",
            "--overwrite",
            "--seed",
            "1",
        ]
    )
    assert rc == 0 and (out / MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["kitti"]


def test_interrupted_write_leaves_nothing_complete(tmp_path):
    out = tmp_path / "data"
    with pytest.raises(RuntimeError), atomic_dir(out, False, {"x": 1}) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("killed")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_never_replaces_data_that_appeared_meanwhile(tmp_path):
    out = tmp_path / "data"
    with pytest.raises(FileExistsError), atomic_dir(out, False, {"x": 1}) as tmp:
        (tmp / "mine.txt").write_text("mine")
        out.mkdir()
        (out / "theirs.txt").write_text("theirs")  # another process finished first
    assert (out / "theirs.txt").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_default_world_reuses_cache(tmp_path, monkeypatch):
    from occflow_data.synth import NuScenesConfig, default_world

    cfg = NuScenesConfig(
        scenes=1,
        keyframes=2,
        height=24,
        width=40,
        camera_sweeps=0,
        lidar_sweeps=0,
        lidar_azimuth_bins=90,
        gt_cues=False,
    )
    monkeypatch.setenv("OCCFLOW_CACHE", str(tmp_path / "cache"))
    first = default_world(config=cfg, progress=False)
    assert first.parent == tmp_path / "cache" and (first / MARKER).is_file()
    stamp = (first / MARKER).stat().st_mtime_ns
    again = default_world(config=cfg, progress=False)
    assert again == first and (first / MARKER).stat().st_mtime_ns == stamp
    other = default_world(tmp_path / "elsewhere", config=cfg, progress=False)
    assert other.parent == tmp_path / "elsewhere"
