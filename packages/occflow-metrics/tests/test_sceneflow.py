"""KITTI scene-flow metrics on crafted disparity and flow maps."""

import math

import pytest
import torch

from occflow_metrics import (
    KITTI_BASELINE,
    KITTI_THRESHOLDS,
    PAPER_THRESHOLDS,
    SceneFlowAccumulator,
    disparity_from_depth,
    scene_flow_metrics,
)


def crafted():
    """Six pixels in a row. Disparity errors 3.1, 2.9, 4, 6, (no GT), 0 on GT 10, 10, 100, 100, -, 50;
    flow errors 0, 3.5, 0, 9, (invalid), 0 on GT magnitudes 10, 10, 100, 100, -, 3."""
    gt_disp = torch.tensor([[10.0, 10.0, 100.0, 100.0, 0.0, 50.0]])
    pred_disp = torch.tensor([[13.1, 12.9, 104.0, 106.0, 7.0, 50.0]])
    gt_flow = torch.zeros(2, 1, 6)
    gt_flow[0] = torch.tensor([10.0, 10.0, 100.0, 100.0, 0.0, 3.0])
    pred_flow = gt_flow.clone()
    pred_flow[0, 0, 1] += 3.5
    pred_flow[1, 0, 3] += 9.0
    pred_flow[0, 0, 4] = 50.0
    valid = torch.tensor([[True, True, True, True, False, True]])
    return pred_disp, gt_disp, pred_flow, gt_flow, valid


def test_kitti_thresholds():
    res = scene_flow_metrics(*crafted()).compute()
    # D1: 3.1 px (31 %) is an outlier; 2.9 px is not; 4 px at 4 % is not (both tests must fail);
    # 6 px at 6 % is.
    assert res["D1@3px/5%"] == pytest.approx(2 / 5)
    assert res["Fl@3px/5%"] == pytest.approx(2 / 5)                # 3.5 px at 35 % and 9 px at 9 %
    assert res["SF@3px/5%"] == pytest.approx(3 / 5)                # pixels 0 (D), 1 (Fl), 3 (both)
    assert res["DE"] == pytest.approx((3.1 + 2.9 + 4 + 6 + 0) / 5)
    assert res["EPE"] == pytest.approx((3.5 + 9) / 5)
    assert math.isnan(res["D2@3px/5%"])                            # no second-frame disparity given
    assert math.isnan(res["DE_FG"])                                # no foreground mask given


def test_paper_thresholds_are_strict():
    res = scene_flow_metrics(*crafted(), thresholds=PAPER_THRESHOLDS).compute()
    assert res["D1@4px/5%"] == pytest.approx(1 / 5)     # 4 px is not > 4 px; 6 px at 6 % is an outlier
    assert res["Fl@4px/5%"] == pytest.approx(1 / 5)
    assert res["D1@8px/10%"] == 0.0
    assert res["Fl@8px/10%"] == 0.0                      # 9 px but only 9 % of 100 px
    assert res["SF@8px/10%"] == 0.0 and res["SF@4px/5%"] == pytest.approx(1 / 5)


def test_foreground_second_frame_and_averaging():
    pred_disp, gt_disp, pred_flow, gt_flow, valid = crafted()
    fg = torch.tensor([[True, True, False, False, False, False]])
    d2 = gt_disp.clone()
    d2_pred = d2.clone()
    d2_pred[0, 2] += 20.0                                 # a D2 outlier at pixel 2
    a = scene_flow_metrics(pred_disp, gt_disp, pred_flow, gt_flow, valid, foreground=fg,
                           pred_disp2=d2_pred, gt_disp2=d2)
    res = a.compute()
    assert res["D1_FG@3px/5%"] == 0.5 and res["Fl_FG@3px/5%"] == 0.5 and res["SF_FG@3px/5%"] == 1.0
    assert res["DE_FG"] == pytest.approx(3.0) and res["EPE_FG"] == pytest.approx(1.75)
    assert res["D2@3px/5%"] == pytest.approx(1 / 5)
    assert res["SF@3px/5%"] == pytest.approx(4 / 5)      # D1 or D2 or Fl
    # A second frame with a single valid pixel, an outlier: pooled 3/6 vs per-frame mean (2/5 + 1) / 2.
    b = scene_flow_metrics(torch.tensor([[20.0]]), torch.tensor([[10.0]]), torch.zeros(2, 1, 1),
                           torch.zeros(2, 1, 1))
    both = a + b
    assert both.compute()["D1@3px/5%"] == pytest.approx(3 / 6)
    assert both.compute(average="frame")["D1@3px/5%"] == pytest.approx((2 / 5 + 1) / 2)
    assert both.compute(average="frame")["DE"] == pytest.approx((16 / 5 + 10) / 2)
    same = SceneFlowAccumulator(KITTI_THRESHOLDS).load_state_dict(
        {k: a.state_dict()[k] + b.state_dict()[k] for k in a.state_dict()})
    assert same.compute() == both.compute()


def test_disparity_from_depth():
    depth = torch.tensor([10.0, 0.0, -1.0, math.inf])
    disp = disparity_from_depth(depth, 721.5377)
    assert disp[0].item() == pytest.approx(721.5377 * KITTI_BASELINE / 10)
    assert disp[1:].tolist() == [0.0, 0.0, 0.0]


def test_bad_inputs():
    pred_disp, gt_disp, pred_flow, gt_flow, valid = crafted()
    with pytest.raises(ValueError, match="pred_flow must have shape"):
        scene_flow_metrics(pred_disp, gt_disp, pred_flow[0], gt_flow)
    with pytest.raises(ValueError, match="given together"):
        scene_flow_metrics(pred_disp, gt_disp, pred_flow, gt_flow, pred_disp2=pred_disp)
    with pytest.raises(ValueError, match="gt_flow_valid must be a bool"):
        scene_flow_metrics(pred_disp, gt_disp, pred_flow, gt_flow, valid.float())
    with pytest.raises(ValueError, match="thresholds must be"):
        scene_flow_metrics(pred_disp, gt_disp, pred_flow, gt_flow, thresholds=(3.0, 0.05))
    with pytest.raises(ValueError, match="thresholds differ"):
        scene_flow_metrics(*crafted()) + scene_flow_metrics(*crafted(), thresholds=PAPER_THRESHOLDS)
