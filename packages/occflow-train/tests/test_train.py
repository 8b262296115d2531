"""The training entry point end to end on a tiny synthetic world: both stages, checkpoints,
kill-and-resume determinism, evaluation and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from occflow_data.synth import NuScenesConfig, WorldConfig, write_nuscenes
from occflow_train.__main__ import parse_args
from occflow_train._checkpoint import latest_checkpoint, list_checkpoints, read_progress

# A tiny model and renderer: seconds per step on one CPU core.
TINY = [
    "--model.encoder.cells", "10", "10", "2", "--model.encoder.embed-dim", "16",
    "--model.encoder.ffn-dim", "16", "--model.fusion.channels", "16",
    "--model.refine.channels", "16", "16", "16", "--model.refine.fpn-channels", "16",
    "--model.refine.out-channels", "8", "--model.refine.upsample", "1", "--model.heads.hidden", "16",
    "--render.rays-per-camera", "4", "6", "--render.n-samples", "16", "--render.lidar-rays", "64",
    "--data.cues", "flow", "mask", "--data.no-make-cues", "--data.max-val-samples", "1",
    "--eval.pictures", "0", "--no-progress", "--log-every", "1",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Two scenes (mini_train's scene-0061, mini_val's scene-0103) of 5 keyframes at 40 x 72 px,
    with the writer's oracle cues as the cue cache (so no cue generation runs in the tests)."""
    root = tmp_path_factory.mktemp("world")
    cfg = NuScenesConfig(scenes=2, keyframes=5, height=40, width=72, camera_sweeps=0, lidar_sweeps=0,
                         lidar_azimuth_bins=360, gt_cues=True, world=WorldConfig())
    write_nuscenes(root, cfg)
    return root


def _args(world: Path, out: Path, *extra: str) -> list[str]:
    return [*TINY, "--data.root", str(world), "--data.cue-cache", str(world / "gt_cues"),
            "--output-dir", str(out), *extra]


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "occflow_train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


def test_cli_overrides_any_field(world, tmp_path):
    cfg = parse_args(["nuscenes", "--data.root", str(world), "--stage1.steps", "7",
                      "--stage2.optim.lr", "0.5", "--model.heads.hidden", "12"])
    assert cfg.data.dataset == "nuscenes" and cfg.stage1.steps == 7
    assert cfg.stage2.optim.lr == 0.5 and cfg.model.heads.hidden == 12
    with pytest.raises(SystemExit):
        parse_args(["no-such-preset"])


def test_kill_and_resume_equals_uninterrupted(world, tmp_path):
    steps = ["--stage1.steps", "3", "--stage2.steps", "2", "--save-every", "1", "--keep-last", "10"]
    full = _run(_args(world, tmp_path / "full", *steps))
    out, _ = full.communicate(timeout=900)
    assert full.returncode == 0, out
    assert "RayIoU" in out and "flat ground" in out            # the summary table was printed
    final_full = latest_checkpoint(tmp_path / "full" / "checkpoints")
    assert read_progress(final_full).global_step == 5 and read_progress(final_full).finished
    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert metrics["samples"] == 1

    # Same run, killed (SIGKILL) as soon as the stage-1 checkpoint of step 2 exists, then resumed.
    ckpts = tmp_path / "killed" / "checkpoints"
    proc = _run(_args(world, tmp_path / "killed", *steps))
    deadline = time.time() + 900
    while not (ckpts / "step-00000002" / "progress.json").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list_checkpoints(ckpts)
    assert done and read_progress(done[-1]).global_step < 5        # really interrupted
    resumed = _run(_args(world, tmp_path / "killed", *steps, "--resume"))
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out
    final_resumed = latest_checkpoint(ckpts)
    assert read_progress(final_resumed).global_step == 5
    a, b = _weights(final_full), _weights(final_resumed)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)
    # Stage 2 started from stage 1's weights: inv_s (deviation) frozen in stage 2.
    stage1_end = _weights(ckpts / "step-00000003")
    assert torch.equal(stage1_end["deviation"], b["deviation"])
