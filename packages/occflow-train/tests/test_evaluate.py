"""Evaluation helpers: the batched ray scoring equals occflow_metrics' per-grid reference."""

import torch

from occflow_metrics import DepthAccumulator, rayiou_counts
from occflow_train._evaluate import (
    EvalResult,
    SampleEval,
    blank_images,
    flat_ground_labels,
    merge_sample_evals,
    score_rays,
)
from volrender import OCC3D_NUSCENES

FREE = 17


def _scene():
    g = torch.Generator().manual_seed(0)
    gt = torch.full((200, 200, 16), FREE, dtype=torch.uint8)
    gt[:, :, :3] = 11                                   # ground (driveable surface)
    gt[120:130, 90:110, 3:8] = 4                        # a car ahead
    gt[60:70, 140:150, 3:12] = 15                       # a building
    flow = torch.zeros(200, 200, 16, 2)
    flow[120:130, 90:110, 3:8] = torch.tensor([3.0, -1.0])
    pred = torch.where(torch.rand(200, 200, 16, generator=g) < 0.02, 0, FREE).to(torch.uint8)
    pred[:, :, :3] = 0
    pred[121:131, 90:110, 3:8] = 0                      # the car, 0.4 m off
    vel = torch.randn(200, 200, 16, 2, generator=g)
    origins = torch.tensor([[0.9, 0.0, 1.8], [-3.0, 0.5, 1.8]])
    return gt, flow, pred, vel, origins


def test_score_rays_matches_reference():
    gt, flow, pred, vel, origins = _scene()
    acc, zero, flat, other, perfect = score_rays(pred, vel, gt, flow, origins, OCC3D_NUSCENES,
                                                 others=(pred.roll(3, dims=0), gt))
    ref = rayiou_counts(pred, gt, origins, pred_flow=vel, gt_flow=flow, variant="geo")
    ref_zero = rayiou_counts(pred, gt, origins, pred_flow=torch.zeros_like(vel), gt_flow=flow, variant="geo")
    ref_flat = rayiou_counts(flat_ground_labels(OCC3D_NUSCENES), gt, origins, variant="geo")
    ref_other = rayiou_counts(pred.roll(3, dims=0), gt, origins, variant="geo")
    for mine, theirs in ((acc, ref), (zero, ref_zero), (flat, ref_flat), (other, ref_other)):
        for k, v in theirs.state_dict().items():
            torch.testing.assert_close(mine.state_dict()[k], v, rtol=0, atol=0, msg=k)
    # the zero-flow baseline is scored on the model's rays: same IoU counts, different flow error
    assert torch.equal(acc.tp, zero.tp)
    assert not torch.equal(acc.ave_sum, zero.ave_sum)
    assert perfect.compute()["RayIoU"] == 1.0              # the truth scored against itself


def test_image_dependence_is_the_changed_share_of_the_union_over_all_samples():
    gt, flow, pred, vel, origins = _scene()
    evals = []
    for changed, union in ((0, 0), (30, 100), (10, 300)):
        acc, zero, flat, blank = score_rays(pred, vel, gt, flow, origins, OCC3D_NUSCENES, others=(pred,))
        evals.append(SampleEval(acc, flat, zero, DepthAccumulator(), rayiou_blank=blank,
                                blank_changed=changed, blank_union=union))
    result = merge_sample_evals(evals)
    assert result.image_dependence["changed_fraction"] == 40 / 400       # not the mean of ratios
    assert result.image_dependence["rayiou_blank"] == result.rayiou["rayiou"]   # blank == real here
    assert "images blanked: RayIoU" in result.table()
    assert set(result.rayiou["per_class"]) >= {"car", "driveable_surface", "manmade"}
    assert "per class RayIoU, model/flat: " in result.table()
    without = merge_sample_evals([SampleEval(acc, flat, zero, DepthAccumulator())])
    assert without.image_dependence == {} and "images blanked" not in without.table()


def test_blank_images_blanks_every_camera_and_keeps_the_geometry():
    from occflow_data import Frame, Sample, collate_samples

    def frame(t: float) -> Frame:
        return Frame(images=torch.rand(2, 3, 8, 12), intrinsics=torch.eye(3).expand(2, 3, 3).clone(),
                     cam_to_ego=torch.eye(4).expand(2, 4, 4).clone(),
                     ego_to_global=torch.eye(4, dtype=torch.float64), timestamp=t)

    batch = collate_samples([Sample(current=frame(1.0), history=[frame(0.5)])])
    out = blank_images(batch)
    assert torch.equal(out.current.images, torch.full_like(batch.current.images, 0.5))
    assert torch.equal(out.history[0].images, torch.full_like(batch.history[0].images, 0.5))
    assert torch.equal(out.current.cam_to_ego, batch.current.cam_to_ego)
    assert not torch.equal(batch.current.images, out.current.images)       # the input is not changed


def test_flat_ground_occupies_cells_at_or_below_zero():
    labels = flat_ground_labels(OCC3D_NUSCENES)
    z = OCC3D_NUSCENES.points("cell")[0, 0, :, 2]
    assert ((labels[0, 0] != FREE) == (z <= 1e-6)).all()
    assert int((labels[0, 0] != FREE).sum()) == 3      # centres -0.8, -0.4, 0.0 m


def test_no_ground_truth_gives_an_empty_table():
    result = merge_sample_evals([])
    assert isinstance(result, EvalResult) and result.samples == 0
    table = result.table()
    assert "Evaluation on 0 validation samples" in table
    row = next(line for line in table.splitlines() if line.startswith("RayIoU@1m"))
    assert row.split()[1:3] == ["-", "-"]          # no numbers invented without ground truth
