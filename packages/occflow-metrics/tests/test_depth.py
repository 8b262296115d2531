"""Depth metrics against hand-computed values (monodepth2's definitions)."""

import math

import pytest
import torch

from occflow_metrics import DEPTH_METRICS, DepthAccumulator, depth_metrics


def test_values_by_hand():
    gt = torch.tensor([2.0, 4.0, 0.0, 100.0, 10.0])    # 0: no GT, 100 m: beyond max_depth
    pred = torch.tensor([2.5, 4.0, 3.0, 50.0, 5.0])
    res = depth_metrics(pred, gt).compute()
    # Valid pairs (2, 2.5), (4, 4), (10, 5).
    assert res["abs_rel"] == pytest.approx((0.5 / 2 + 0 + 5 / 10) / 3)
    assert res["sq_rel"] == pytest.approx((0.25 / 2 + 0 + 25 / 10) / 3)
    assert res["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 25) / 3))
    assert res["rmse_log"] == pytest.approx(math.sqrt((math.log(2 / 2.5) ** 2 + math.log(2) ** 2) / 3))
    # max(2.5/2, 2/2.5) = 1.25 exactly: not < 1.25 (strict), but < 1.25^2; 10/5 = 2 > 1.25^3.
    assert res["a1"] == pytest.approx(1 / 3) and res["a2"] == pytest.approx(2 / 3)
    assert res["a3"] == pytest.approx(2 / 3)
    assert res["images"] == 1


def test_range_median_scaling_and_clamping():
    gt = torch.tensor([0.05, 1.0, 2.0, 3.0, 4.0])
    pred = torch.tensor([9.0, 2.0, 4.0, 6.0, 10.0])
    # min_depth 0.1 (the paper's range) drops the 5 cm pixel; medians (numpy style) 2.5 and 5 -> ratio 0.5.
    acc = depth_metrics(pred, gt, min_depth=0.1, median_scaling=True)
    res = acc.compute()
    assert res["ratio_mean"] == pytest.approx(0.5)
    assert res["abs_rel"] == pytest.approx((1 / 4) / 4)          # only the last pixel is off: 5 vs 4
    assert res["a1"] == pytest.approx(0.75)                       # 5 / 4 = 1.25 is not < 1.25
    # With the default 1e-3 lower bound the 5 cm pixel counts.
    assert depth_metrics(pred, gt).compute()["a1"] == pytest.approx(0.0)
    # Predictions beyond max_depth are clamped to it (monodepth2), or kept.
    far = depth_metrics(torch.tensor([500.0]), torch.tensor([40.0])).compute()
    assert far["abs_rel"] == pytest.approx(1.0)
    assert depth_metrics(torch.tensor([500.0]), torch.tensor([40.0]), clamp_pred=False).compute()[
        "abs_rel"] == pytest.approx(11.5)


def test_dataset_value_is_the_mean_of_per_image_values_and_merging_is_exact():
    g = torch.Generator().manual_seed(0)
    images = [(torch.rand(n, generator=g) * 50 + 1, torch.rand(n, generator=g) * 60 + 0.5)
              for n in (10, 1000, 37)]
    per = [depth_metrics(p, t) for p, t in images]
    total = sum(per)
    for name in DEPTH_METRICS:
        assert total.compute()[name] == pytest.approx(sum(a.compute()[name] for a in per) / 3, rel=1e-12)
    again = DepthAccumulator.from_state_dict({k: per[0].state_dict()[k] + (per[1] + per[2]).state_dict()[k]
                                              for k in per[0].state_dict()})
    assert torch.equal(again.images, total.images)
    torch.testing.assert_close(again.sums, total.sums, rtol=1e-14, atol=0)
    # An image with no valid pixel does not count.
    assert (total + depth_metrics(torch.ones(3), torch.zeros(3))).compute()["images"] == 3


def test_bad_inputs():
    with pytest.raises(ValueError, match="pred must have shape"):
        depth_metrics(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        depth_metrics(torch.ones(3), torch.ones(3), min_depth=5, max_depth=1)
    with pytest.raises(ValueError, match="pred must be > 0"):
        depth_metrics(torch.zeros(3), torch.ones(3), clamp_pred=False)
    with pytest.raises(ValueError, match="pred .at valid pixels. must be finite"):
        depth_metrics(torch.tensor([math.nan]), torch.ones(1))
    with pytest.raises(TypeError, match="gt must be a torch.Tensor"):
        depth_metrics(torch.ones(3), [1, 2, 3])
