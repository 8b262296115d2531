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


STEPS = ["--stage1.steps", "3", "--stage2.steps", "2", "--save-every", "1", "--keep-last", "10"]


@pytest.fixture(scope="module")
def full_run(world, tmp_path_factory) -> Path:
    """An uninterrupted run of 3 + 2 steps (checkpoint every step)."""
    out_dir = tmp_path_factory.mktemp("full")
    full = _run(_args(world, out_dir, *STEPS))
    out, _ = full.communicate(timeout=900)
    assert full.returncode == 0, out
    assert "RayIoU" in out and "flat ground" in out            # the summary table was printed
    return out_dir


def test_full_run_outputs(full_run):
    final = latest_checkpoint(full_run / "checkpoints")
    assert read_progress(final).global_step == 5 and read_progress(final).finished
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert metrics["samples"] == 1
    assert set(metrics) >= {"model", "flat_ground_baseline", "zero_flow_baseline", "depth",
                            "image_dependence"}
    assert 0.0 <= metrics["image_dependence"]["changed_fraction"] <= 1.0
    assert "car" in metrics["model"]["per_class"]
    assert list((full_run / "logs").rglob("events.out.tfevents.*"))       # TensorBoard logs


def test_predict_writes_what_the_metrics_cli_scores(full_run, world, tmp_path):
    from occflow_metrics import read_prediction
    from occflow_train.predict import load_run, main

    ckpt, cfg = load_run(full_run)                    # a run folder resolves to its newest checkpoint
    assert read_progress(ckpt).global_step == 5 and cfg.model.heads.hidden == 16
    assert main(["--checkpoint", str(full_run), "--out", str(tmp_path / "pred"), "--pictures", "1"]) == 0
    files = sorted((tmp_path / "pred").glob("*.npz"))
    assert len(files) == 5                            # every keyframe of the validation scene
    pred = read_prediction(tmp_path / "pred", files[0].stem)
    assert pred["semantics"].shape == (200, 200, 16) and pred["flow"].shape == (200, 200, 16, 2)
    assert (tmp_path / "pred" / "pictures" / "frame_000.png").stat().st_size > 10_000
    cli = subprocess.run([sys.executable, "-m", "occflow_metrics", "--gt", str(world), "--pred",
                          str(tmp_path / "pred"), "--variant", "geo", "--split", "val"],
                         capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "RayIoU" in cli.stdout
    assert main(["--checkpoint", str(tmp_path / "nothing")]) == 2


def test_kill_and_resume_equals_uninterrupted(world, full_run, tmp_path):
    steps = STEPS
    final_full = latest_checkpoint(full_run / "checkpoints")

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


@pytest.mark.slow
def test_two_cpu_processes_stay_in_sync_and_evaluate_like_one(world, tmp_path):
    """``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2`` (gloo): the ranks
    end with identical parameters, and the sharded evaluation equals a single-process one."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    args = [*TINY, "--data.root", str(world), "--data.cue-cache", str(world / "gt_cues"),
            "--data.max-val-samples", "0", "--stage1.steps", "2", "--stage2.steps", "1"]
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                          "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                          "--dynamo_backend", "no", "-m", "occflow_train", *args,
                          "--output-dir", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=1800)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert "parameters identical on all 2 processes" in two.stdout + two.stderr
    final = latest_checkpoint(tmp_path / "two" / "checkpoints")
    one = subprocess.run([sys.executable, "-m", "occflow_train", *args, "--stage", "2", "--stage2.steps", "0",
                          "--init-from", str(final), "--output-dir", str(tmp_path / "one")],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=1800)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert m2["samples"] == m1["samples"] == 5
    assert m2 == m1


def test_occupancy_supervised_run_trains_both_heads_without_cues(world, tmp_path):
    """``--supervision occupancy``: the same model and schedule trained from the 3-D ground truth;
    no cue cache is needed, stage 1 moves the geometry and stage 2 the flow head."""
    args = [a for a in _args(world, tmp_path / "sup", "--supervision", "occupancy", "--stage1.steps", "2",
                             "--stage2.steps", "2", "--save-every", "1", "--keep-last", "10")
            if a != str(world / "gt_cues")]
    args.remove("--data.cue-cache")
    proc = _run(args)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    assert "RayIoU" in out and "flat ground" in out
    config = json.loads((tmp_path / "sup" / "config.json").read_text())
    assert config["supervision"] == "occupancy" and config["data"]["cues"] == []
    ckpts = tmp_path / "sup" / "checkpoints"
    start, stage1, stage2 = _weights(ckpts / "step-00000001"), _weights(ckpts / "step-00000002"), \
        _weights(ckpts / "step-00000004")
    assert not all(torch.equal(start[k], stage1[k]) for k in start if k.startswith("sdf_head"))
    assert not all(torch.equal(stage1[k], stage2[k]) for k in stage1 if k.startswith("flow_head"))
