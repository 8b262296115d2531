"""Voxel IoU / mIoU (Occ3D style) against hand-computed values."""

import math

import pytest
import torch

from occflow_metrics import VoxelIoUAccumulator, voxel_confusion

CAR, ROAD, FREE = 4, 11, 17


def test_values_by_hand_and_camera_mask():
    gt = torch.tensor([CAR, CAR, FREE, FREE, ROAD, ROAD, FREE, FREE], dtype=torch.uint8).view(2, 2, 2)
    pred = torch.tensor([CAR, FREE, CAR, FREE, ROAD, ROAD, ROAD, FREE], dtype=torch.uint8).view(2, 2, 2)
    res = voxel_confusion(pred, gt).compute()
    assert res["per_class"]["car"] == pytest.approx(1 / 3)        # tp 1, fn 1, fp 1
    assert res["per_class"]["driveable_surface"] == pytest.approx(2 / 3)
    assert math.isnan(res["per_class"]["bus"])
    assert res["mIoU"] == pytest.approx(0.5)
    assert res["IoU_geo"] == pytest.approx(3 / 6)                  # occupied: gt 4, pred 5, both 3
    mask = torch.ones(2, 2, 2, dtype=torch.bool)
    mask.view(-1)[6] = False                                        # hide the false road voxel
    res = voxel_confusion(pred, gt, mask).compute()
    assert res["per_class"]["driveable_surface"] == 1.0 and res["mIoU"] == pytest.approx(2 / 3)
    assert res["voxels"] == 7


def test_merge_equals_one_pass():
    g = torch.Generator().manual_seed(0)
    gts = [torch.randint(0, 18, (20, 20, 4), generator=g, dtype=torch.uint8) for _ in range(3)]
    preds = [torch.where(torch.rand(20, 20, 4, generator=g) < 0.7, t, torch.full_like(t, FREE)) for t in gts]
    merged = sum(voxel_confusion(p, t) for p, t in zip(preds, gts, strict=True))
    once = voxel_confusion(torch.cat(preds), torch.cat(gts))
    assert torch.equal(merged.confusion, once.confusion)
    restored = VoxelIoUAccumulator().load_state_dict(merged.state_dict())
    assert restored.compute() == once.compute()


def test_bad_inputs():
    gt = torch.zeros(2, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="pred_labels must have shape"):
        voxel_confusion(gt[0], gt)
    with pytest.raises(ValueError, match="mask must be a bool"):
        voxel_confusion(gt, gt, gt)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 17\]"):
        voxel_confusion(gt + 18, gt)
