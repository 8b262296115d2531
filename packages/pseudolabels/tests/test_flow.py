"""Optical flow estimators: accuracy on the constructed scene, validity, weight loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import pseudolabels as pl

# Thresholds set from measurement on the constructed scene (tests/conftest.py, 120 x 200 px,
# flows up to 46 px, seeds 0-3): DIS medium mean EPE over visible pixels 0.40-1.15 px (mean
# 0.62), fast 1.13-1.67, ultrafast 1.48-1.95. The bounds leave ~30 % headroom over the mean.
EPE_BOUND = {"medium": 0.85, "fast": 2.0, "ultrafast": 2.4}
# Among pixels marked valid the error must drop (the forward-backward test removes occlusions
# and failures): measured 0.25-0.53 px for medium.
VALID_EPE_BOUND = {"medium": 0.6, "fast": 1.6, "ultrafast": 1.6}


@pytest.fixture(scope="module")
def scenes(toy_scene_factory):
    return [toy_scene_factory(seed) for seed in range(4)]


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_dis_epe_against_ground_truth(scenes, preset):
    est = pl.DISFlow(preset)
    all_err, valid_err, valid_frac = [], [], []
    for s in scenes:
        flow, valid = est.estimate(s["image_t"], s["image_t1"])
        assert flow.shape == (2, 120, 200) and flow.dtype == torch.float32
        assert valid.shape == (120, 200) and valid.dtype == torch.bool
        err = (flow - s["flow"]).norm(dim=0)
        all_err.append(err[s["visible"]].mean())
        valid_err.append(err[s["visible"] & valid].mean())
        valid_frac.append(valid.float().mean())
    assert torch.stack(all_err).mean() < EPE_BOUND[preset]
    assert torch.stack(valid_err).mean() < VALID_EPE_BOUND[preset]
    assert torch.stack(valid_err).mean() < torch.stack(all_err).mean()
    assert 0.4 < torch.stack(valid_frac).mean() < 0.95


def test_forward_backward_marks_occlusion(scenes):
    """Pixels leaving the image or hidden by the moving object at t+1 are mostly rejected.

    Measured (DIS medium, seeds 0-3): valid fraction 0.31-0.67 (mean 0.44) of the occluded
    background, 0.95-0.97 of the visible pixels, 0.04-0.09 of pixels leaving the image.
    """
    est = pl.DISFlow("medium")
    occ, vis, out = [], [], []
    for s in scenes:
        _, valid = est.estimate(s["image_t"], s["image_t1"])
        occluded = s["inside"] & ~s["visible"]
        assert occluded.sum() > 50
        occ.append(valid[occluded].float().mean())
        vis.append(valid[s["visible"]].float().mean())
        out.append(valid[~s["inside"]].float().mean())
    assert torch.stack(occ).mean() < 0.6
    assert torch.stack(vis).mean() > 0.9
    assert torch.stack(out).mean() < 0.15


def test_forward_backward_valid_exact_cases():
    h, w = 10, 12
    fw = torch.zeros(2, h, w)
    fw[0] = 2.0
    bw = -fw
    v = pl.forward_backward_valid(fw, bw)
    assert v[:, : w - 2].all() and not v[:, w - 2 :].any()  # target leaves the image in the last 2 columns
    assert not pl.forward_backward_valid(fw, torch.zeros_like(bw)).any()  # |2|^2 > 0.01 * 4 + 0.5
    assert pl.forward_backward_valid(fw, torch.zeros_like(bw), alpha=0.0, beta=4.5)[:, : w - 2].all()
    with pytest.raises(ValueError, match="flow_bw"):
        pl.forward_backward_valid(fw, bw[:, :5])


def test_dis_without_fb_check_only_bounds(scenes):
    s = scenes[0]
    flow, valid = pl.DISFlow("ultrafast", fb_check=False).estimate(s["image_t"], s["image_t1"])
    target = pl.pixel_grid(120, 200) + flow
    inside = (target[0] >= 0) & (target[0] <= 199) & (target[1] >= 0) & (target[1] <= 119)
    assert torch.equal(valid, inside)


def test_estimator_input_validation():
    est = pl.DISFlow("ultrafast")
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="image_t: expected finite values in"):
        est.estimate(img * 2, img)
    with pytest.raises(ValueError, match="image_t1: expected the shape"):
        est.estimate(img, img[:, :8])
    with pytest.raises(ValueError, match=r"image_t: expected shape \[3, H, W\]"):
        est.estimate(img[:1], img[:1])
    with pytest.raises(TypeError, match="image_t"):
        est.estimate(img.numpy(), img)
    with pytest.raises(ValueError, match="preset"):
        pl.DISFlow("slow")
    assert isinstance(est, pl.FlowEstimator)
    assert est.settings()["preset"] == "ultrafast"


def test_sample_bilinear_matches_linear_function():
    h, w = 7, 9
    grid = pl.pixel_grid(h, w)
    field = (2 * grid[0] - 3 * grid[1] + 1)[None]
    pts = torch.stack([torch.full((3, 4), 2.25), torch.full((3, 4), 4.5)])
    out = pl.sample_bilinear(field, pts)
    assert torch.allclose(out, torch.full((1, 3, 4), 2 * 2.25 - 3 * 4.5 + 1), atol=1e-5)


# ---------------------------------------------------------------- RAFT / local weights


def _save_random_raft(path: Path, arch: str = "raft_small") -> None:
    from torchvision.models import optical_flow

    torch.manual_seed(0)
    model = getattr(optical_flow, arch)(weights=None, progress=False)
    torch.save(model.state_dict(), path)


def test_raft_missing_weights_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "raft_small.pth"
    with pytest.raises(FileNotFoundError, match=str(missing).replace("\\", "\\\\")):
        pl.RAFTFlow(missing)


def test_raft_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "small.pth"
    _save_random_raft(path, "raft_small")
    state = torch.load(path, weights_only=True)
    first = next(iter(state))
    state["extra.weight"] = state.pop(first)
    torch.save(state, tmp_path / "edited.pth")
    with pytest.raises(
        ValueError, match=rf"edited\.pth: weights do not fit RAFT: missing {first}; unexpected extra"
    ):
        pl.RAFTFlow(tmp_path / "edited.pth")
    with pytest.raises(ValueError, match="arch: expected one of"):
        pl.RAFTFlow(path, arch="raft_tiny")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a readable torch checkpoint"):
        pl.RAFTFlow(junk)


def test_raft_loads_local_weights_and_runs(tmp_path):
    path = tmp_path / "raft_small.pth"
    _save_random_raft(path)
    # wrapped like a training checkpoint of a DataParallel model
    state = torch.load(path, weights_only=True)
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pth")
    est = pl.RAFTFlow(tmp_path / "wrapped.pth", num_flow_updates=2)
    for name, p in est.model.state_dict().items():
        assert torch.equal(p, state[name])
    g = torch.Generator().manual_seed(1)
    # smaller than RAFT's 128 px minimum and not multiples of 8: padded, then cropped back
    img0, img1 = torch.rand(3, 36, 140, generator=g), torch.rand(3, 36, 140, generator=g)
    flow, valid = est.estimate(img0, img1)
    assert flow.shape == (2, 36, 140) and valid.shape == (36, 140) and torch.isfinite(flow).all()
    assert est.settings()["arch"] == "raft_small" and est.name == "torchvision-raft_small"


def test_torch_flow_estimator_plugin(tmp_path):
    """A user network (here: a one-parameter 'global shift' model) plugged in from local weights."""

    class Shift(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.shift = torch.nn.Parameter(torch.zeros(2))

    model = Shift()
    with torch.no_grad():
        model.shift.copy_(torch.tensor([3.0, -1.0]))
    torch.save(model.state_dict(), tmp_path / "shift.pth")

    def run(m, a, b):
        return m.shift.view(1, 2, 1, 1).expand(1, 2, *a.shape[-2:])

    est = pl.TorchFlowEstimator("shift", Shift, tmp_path / "shift.pth", run, pad_to=16)
    img = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(2))
    flow, _ = est.estimate(img, img)
    assert torch.allclose(flow[:, 0, 0], torch.tensor([3.0, -1.0]))
    assert flow.shape == (2, 20, 30)


RAFT_WEIGHTS = os.environ.get("PSEUDOLABELS_RAFT_WEIGHTS")


@pytest.mark.slow
@pytest.mark.skipif(
    not RAFT_WEIGHTS, reason="set PSEUDOLABELS_RAFT_WEIGHTS to a local raft_small/raft_large file"
)
def test_raft_epe_with_real_weights(scenes):
    arch = "raft_large" if "large" in Path(RAFT_WEIGHTS).name else "raft_small"
    est = pl.RAFTFlow(RAFT_WEIGHTS, arch=arch)
    errs = []
    for s in scenes:
        flow, _ = est.estimate(s["image_t"], s["image_t1"])
        errs.append((flow - s["flow"]).norm(dim=0)[s["visible"]].mean())
    assert torch.stack(errs).mean() < EPE_BOUND["medium"]


def test_scaled_flow_at_half_resolution(toy_scene_factory):
    """DIS medium on half-size images, flow brought back to full size.

    Measured on the 240 x 400 constructed scene (seeds 0, 1): EPE 1.18 and 2.11 px over visible
    pixels at half resolution vs 0.43 and 1.79 px at full resolution.
    """
    errs = []
    for seed in range(2):
        s = toy_scene_factory(seed, h=240, w=400)
        flow, valid = pl.ScaledFlow(pl.DISFlow("medium"), 0.5).estimate(s["image_t"], s["image_t1"])
        assert flow.shape == (2, 240, 400) and valid.shape == (240, 400)
        errs.append((flow - s["flow"]).norm(dim=0)[s["visible"]].mean())
        assert valid.float().mean() > 0.5
    assert torch.stack(errs).mean() < 2.2
    with pytest.raises(ValueError, match="scale"):
        pl.ScaledFlow(pl.DISFlow("fast"), 1.5)
