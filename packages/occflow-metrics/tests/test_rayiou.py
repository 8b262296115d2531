"""RayIoU, mAVE and OccScore on hand-built scenes with known answers."""

import math

import pytest
import torch

from occflow_metrics import (
    FREE_LABEL,
    RayIoUAccumulator,
    cast_rayiou_rays,
    lidar_ray_directions,
    occ_score,
    rayiou_counts,
    rayiou_counts_from_rays,
)

CAR, TRUCK, BARRIER, ROAD, SIDEWALK, MANMADE, VEGETATION = 4, 10, 1, 11, 13, 15, 16
ORIGIN = torch.tensor([[0.985793, 0.0, 1.84019]], dtype=torch.float64)


def empty():
    return torch.full((200, 200, 16), FREE_LABEL, dtype=torch.uint8)


def street(seed: int):
    """A structured scene: road and sidewalk, buildings, trees, and moving cars/trucks with flow (m/s)."""
    g = torch.Generator().manual_seed(seed)
    lab = empty()
    lab[:, :, :2] = ROAD
    lab[:, :40, :2] = SIDEWALK
    lab[:, 160:, :2] = SIDEWALK
    lab[:, :25, 2:12] = MANMADE
    lab[:, 175:, 2:10] = MANMADE
    flow = torch.zeros(200, 200, 16, 2)
    for _ in range(6):
        x = torch.randint(20, 170, (1,), generator=g).item()
        y = torch.randint(30, 150, (1,), generator=g).item()
        lab[x:x + 3, y:y + 3, 2:9] = VEGETATION if seed % 2 else BARRIER
    for k in range(10):
        x = torch.randint(10, 180, (1,), generator=g).item()
        y = torch.randint(60, 130, (1,), generator=g).item()
        cls = CAR if k % 3 else TRUCK
        lab[x:x + 11, y:y + 5, 2:6 if cls == CAR else 9] = cls
        flow[x:x + 11, y:y + 5, 2:9] = torch.randn(2, generator=g) * 5
    flow[lab == FREE_LABEL] = 0
    return lab, flow


def test_wall_at_known_distance_reports_exit_distance():
    lab = empty()
    lab[150] = MANMADE           # a wall filling x in [20, 20.4) m
    lab[0, 0, 0] = ROAD          # the label SparseOcc reads for rays that never enter the grid
    origins = torch.tensor([[0.1, 0.0, 1.0], [0.1, 0.0, 1.0], [0.1, 0.0, 7.0]], dtype=torch.float64)
    dirs = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for backend in ("warp", "torch"):
        cast = cast_rayiou_rays(lab[None], origins, dirs, backend=backend)
        # Exit of the wall voxel (20.4 m - 0.1 m), not its entry; no hit: the grid exit, label free;
        # never entering the grid (origin above it, looking up): -0.4 m and the label of voxel (0, 0, 0).
        torch.testing.assert_close(cast.distance[0], torch.tensor([20.3, 40.1, -0.4]), atol=1e-4, rtol=0)
        assert cast.label[0].tolist() == [MANMADE, FREE_LABEL, ROAD]
        assert cast.index[0, 0].tolist() == [150, 100, 5]


def test_reference_backend_agrees_on_a_street():
    lab, _ = street(0)
    dirs = lidar_ray_directions()[::23]
    origins = torch.tensor([[0.98, 0.3, 1.84], [-12.3, 4.1, 1.9]], dtype=torch.float64)
    o = origins.repeat_interleave(dirs.shape[0], 0)
    d = dirs.repeat(2, 1)
    a = cast_rayiou_rays(torch.stack([lab, empty()]), o, d, backend="warp")
    b = cast_rayiou_rays(torch.stack([lab, empty()]), o, d, backend="torch")
    assert torch.equal(a.label, b.label) and torch.equal(a.index, b.index)
    torch.testing.assert_close(a.distance, b.distance, atol=1e-6, rtol=0)
    assert (a.label[0] != FREE_LABEL).float().mean() > 0.5


def test_distance_error_of_1_5_m_is_tp_at_2_and_4_but_not_1():
    gt_l = torch.tensor([CAR, CAR, CAR])
    gt_d = torch.tensor([10.0, 10.0, 10.0])
    pred_d = torch.tensor([11.5, 8.5, 12.0])   # 1.5 m behind, 1.5 m in front, exactly 2 m (strict <)
    acc = rayiou_counts_from_rays(gt_l.clone(), pred_d, gt_l, gt_d)
    assert acc.tp[:, CAR].tolist() == [0, 2, 3]
    assert acc.gt[CAR] == 3 and acc.pred[CAR] == 3


def test_scene_shifted_by_four_voxels_is_tp_at_2_and_4_not_1():
    # Head-on rays: a car wall moved 1.6 m (4 voxels, the 0.4 m grid's step nearest to 1.5 m) farther.
    gt, pred = empty(), empty()
    gt[150:152, 80:120, 2:10] = CAR
    pred[154:156, 80:120, 2:10] = CAR
    dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.05, 0.0], [1.0, -0.05, 0.02]])
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    origin = torch.tensor([[0.1, 0.0, 1.5]], dtype=torch.float64)
    res = rayiou_counts(pred, gt, origin, directions=dirs).compute()
    assert res["per_class"]["car"] == [0.0, 1.0, 1.0]
    assert res["RayIoU@1"] == 0.0 and res["RayIoU@2"] == 1.0 and res["RayIoU@4"] == 1.0
    assert res["RayIoU"] == pytest.approx(2 / 3)


def test_perfect_prediction_scores_one_and_zero_velocity_error():
    lab, flow = street(1)
    res = rayiou_counts(lab, lab, ORIGIN, pred_flow=flow, gt_flow=flow).compute()
    assert res["RayIoU"] == 1.0 and res["mAVE"] == 0.0 and res["OccScore"] == 1.0
    assert res["per_class"]["car"] == [1.0, 1.0, 1.0]
    assert all(math.isnan(v) for v in res["per_class"]["bus"])      # absent from both: NaN, skipped
    assert res["AVE_per_class"]["car"] == 0.0 and math.isnan(res["AVE_per_class"]["bus"])
    assert res["rays"] > 5000


def test_empty_prediction_scores_zero():
    lab, flow = street(2)
    res = rayiou_counts(empty(), lab, ORIGIN, pred_flow=torch.zeros_like(flow), gt_flow=flow).compute()
    assert res["RayIoU"] == 0.0
    assert all(v == [0.0, 0.0, 0.0] for k, v in res["per_class"].items() if k in ("car", "road", "manmade")
               or not math.isnan(v[0]))
    assert math.isnan(res["mAVE"]) and math.isnan(res["OccScore"])


def test_class_swap_is_wrong_in_semantic_and_right_in_geo():
    lab, _ = street(3)
    swapped = lab.clone()
    swapped[lab == CAR] = TRUCK
    swapped[lab == TRUCK] = CAR
    sem = rayiou_counts(swapped, lab, ORIGIN).compute()
    geo = rayiou_counts(swapped, lab, ORIGIN, variant="geo").compute()
    assert sem["per_class"]["car"] == [0.0, 0.0, 0.0] and sem["per_class"]["truck"] == [0.0, 0.0, 0.0]
    assert sem["per_class"]["driveable_surface"] == [1.0, 1.0, 1.0]
    assert sem["RayIoU"] < 1.0
    assert geo["RayIoU"] == 1.0 and geo["variant"] == "geo"


def test_mave_uses_only_rays_that_are_tp_at_2m():
    gt, pred = empty(), empty()
    gt[:, :, :2] = ROAD
    pred[:, :, :2] = ROAD
    gt_flow = torch.zeros(200, 200, 16, 2)
    pred_flow = torch.zeros(200, 200, 16, 2)
    # Car A ahead: right place, flow off by 0.5 m/s. Car B behind: 8 voxels (3.2 m) too far away, so its
    # rays are TP at 4 m only, with a flow error of 19 m/s that mAVE must not see.
    gt[150:161, 95:105, 2:6] = CAR
    pred[150:161, 95:105, 2:6] = CAR
    gt_flow[150:161, 95:105, 2:6] = torch.tensor([1.0, 0.0])
    pred_flow[150:161, 95:105, 2:6] = torch.tensor([1.0, 0.5])
    gt[40:51, 95:105, 2:6] = CAR
    pred[32:43, 95:105, 2:6] = CAR
    gt_flow[40:51, 95:105, 2:6] = torch.tensor([1.0, 0.0])
    pred_flow[32:43, 95:105, 2:6] = torch.tensor([20.0, 0.0])
    # A barrier hit exactly, with a wrong flow: not a moving class, ignored.
    gt[100:103, 150:153, 2:6] = BARRIER
    pred[100:103, 150:153, 2:6] = BARRIER
    pred_flow[100:103, 150:153, 2:6] = 7.0
    acc = rayiou_counts(pred, gt, ORIGIN, pred_flow=pred_flow, gt_flow=gt_flow)
    assert acc.tp[2, CAR] > acc.tp[1, CAR] > 0          # car B's rays are TP at 4 m but not at 2 m
    res = acc.compute()
    assert res["mAVE"] == pytest.approx(0.5, abs=1e-6)
    assert res["AVE_per_class"]["car"] == pytest.approx(0.5, abs=1e-6)
    assert acc.ave_count[CAR] == acc.tp[1, CAR]
    assert res["OccScore"] == pytest.approx(0.9 * res["RayIoU"] + 0.1 * 0.5)


def test_merged_accumulators_equal_one_pass_over_all_rays():
    dirs = lidar_ray_directions()
    samples = [street(s) for s in (4, 5, 6)]
    preds = [(torch.roll(lab, 1, dims=0), torch.roll(flow, 1, dims=0) * 0.9) for lab, flow in samples]
    origins = [ORIGIN, torch.tensor([[3.0, -2.0, 1.8], [-20.0, 1.0, 1.9]], dtype=torch.float64), ORIGIN + 5]
    per_sample = [rayiou_counts(p, g, o, pred_flow=pf, gt_flow=gf)
                  for (g, gf), (p, pf), o in zip(samples, preds, origins, strict=True)]
    # One pass: cast every ray of every sample, concatenate, count once.
    cols = {k: [] for k in ("pl", "pd", "gl", "gd", "pf", "gf")}
    for (g, gf), (p, pf), o in zip(samples, preds, origins, strict=True):
        c = cast_rayiou_rays(torch.stack([g, p]), o.repeat_interleave(len(dirs), 0), dirs.repeat(len(o), 1))
        gi, pi = c.index[0], c.index[1]
        cols["gl"].append(c.label[0])
        cols["gd"].append(c.distance[0])
        cols["pl"].append(c.label[1])
        cols["pd"].append(c.distance[1])
        cols["gf"].append(gf[gi[:, 0], gi[:, 1], gi[:, 2]])
        cols["pf"].append(pf[pi[:, 0], pi[:, 1], pi[:, 2]])
    cat = {k: torch.cat(v) for k, v in cols.items()}
    once = rayiou_counts_from_rays(cat["pl"], cat["pd"], cat["gl"], cat["gd"], pred_flow=cat["pf"],
                                   gt_flow=cat["gf"])
    # "Two processes": sample 0 on one, samples 1 and 2 on the other; reduce their state dicts.
    rank0, rank1 = per_sample[0], per_sample[1] + per_sample[2]
    reduced = {k: rank0.state_dict()[k] + rank1.state_dict()[k] for k in rank0.state_dict()}
    merged = RayIoUAccumulator().load_state_dict(reduced)
    for acc in (merged, sum(per_sample), per_sample[2].merge(per_sample[0]).merge(per_sample[1])):
        for key in ("gt", "pred", "tp", "ave_count"):
            assert torch.equal(getattr(acc, key), getattr(once, key)), key
        torch.testing.assert_close(acc.ave_sum, once.ave_sum, rtol=1e-12, atol=1e-9)
    assert 0.1 < once.compute()["RayIoU"] < 0.99
    with pytest.raises(ValueError, match="different settings"):
        merged + RayIoUAccumulator(variant="geo")


def test_rayiou_warp_and_reference_backends_give_the_same_counts():
    gt, gf = street(7)
    pred = torch.roll(gt, 2, dims=1)
    dirs = lidar_ray_directions()[::31]
    a = rayiou_counts(pred, gt, ORIGIN, directions=dirs, pred_flow=gf, gt_flow=gf, backend="warp")
    b = rayiou_counts(pred, gt, ORIGIN, directions=dirs, pred_flow=gf, gt_flow=gf, backend="torch")
    for key, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[key], rtol=0, atol=1e-9)


def test_class_predicted_but_absent_from_gt_counts_as_zero():
    acc = rayiou_counts_from_rays(torch.tensor([TRUCK, CAR]), torch.tensor([5.0, 5.0]),
                                  torch.tensor([CAR, CAR]),
                                  torch.tensor([5.0, 5.0]))
    iou = acc.iou()
    assert iou[0, TRUCK] == 0.0 and iou[0, CAR] == 0.5 and math.isnan(iou[0, BARRIER])
    # GT-free rays are not scored at all.
    acc = rayiou_counts_from_rays(torch.tensor([CAR]), torch.tensor([5.0]), torch.tensor([FREE_LABEL]),
                                  torch.tensor([40.0]))
    assert acc.gt.sum() == 0 and acc.pred.sum() == 0


def test_occ_score():
    assert occ_score(0.4, 0.5) == pytest.approx(0.9 * 0.4 + 0.05)
    assert occ_score(0.4, 3.0) == pytest.approx(0.36)
    assert math.isnan(occ_score(0.4, math.nan))


def test_bad_inputs_are_named():
    lab = empty()
    with pytest.raises(ValueError, match=r"gt_labels labels must lie in \[0, 17\]"):
        rayiou_counts(lab, torch.full_like(lab, 18), ORIGIN)
    with pytest.raises(ValueError, match="pred_labels must have shape"):
        rayiou_counts(lab[:100], lab, ORIGIN)
    with pytest.raises(ValueError, match="origins must have shape"):
        rayiou_counts(lab, lab, ORIGIN[0])
    with pytest.raises(ValueError, match="variant must be"):
        rayiou_counts(lab, lab, ORIGIN, variant="instance")
    with pytest.raises(ValueError, match="pred_flow must have shape"):
        rayiou_counts(lab, lab, ORIGIN, pred_flow=torch.zeros(200, 200, 16, 3))
    with pytest.raises(TypeError, match="pred_labels must be a torch.Tensor"):
        rayiou_counts(lab.numpy(), lab, ORIGIN)


@pytest.mark.cuda
def test_cuda_counts_equal_cpu_counts():
    gt, gf = street(8)
    pred = torch.roll(gt, 3, dims=0)
    pf = torch.roll(gf, 3, dims=0) * 1.3
    origins = torch.tensor([[0.98, 0.0, 1.84], [-10.0, 3.0, 1.9]], dtype=torch.float64)
    cpu = rayiou_counts(pred, gt, origins, pred_flow=pf, gt_flow=gf)
    gpu = rayiou_counts(pred.cuda(), gt.cuda(), origins.cuda(), pred_flow=pf.cuda(), gt_flow=gf.cuda())
    for key, value in cpu.state_dict().items():
        torch.testing.assert_close(value, gpu.state_dict()[key], rtol=1e-12, atol=1e-9)
