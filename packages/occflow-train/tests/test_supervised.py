"""The 3-D-supervised losses (``supervision="occupancy"``): the truncated SDF of an occupancy grid
against a brute-force distance, the terms' minima and gradients, and the errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from occflow_data import FREE_LABEL, GroundTruthBatch
from occflow_train import OccupancyLossConfig, SceneField, occupancy_losses, occupancy_sdf
from volrender import GridSpec


def _brute_sdf(occ: torch.Tensor, grid: GridSpec, truncation: float) -> torch.Tensor:
    """The definition of :func:`occupancy_sdf`, by brute force over all pairs of cell centres."""
    centres = grid.points("cell").reshape(-1, 3).double()
    flat = occ.reshape(-1)
    d = torch.cdist(centres, centres)
    half = 0.5 * min(grid.voxel_size)
    to_occ = d[:, flat].min(dim=1).values - half
    to_free = d[:, ~flat].min(dim=1).values - half
    out = torch.where(flat, -to_free, to_occ)
    return out.clamp(-truncation, truncation).reshape(occ.shape).float()


def test_occupancy_sdf_matches_brute_force_on_anisotropic_voxels():
    gen = torch.Generator().manual_seed(0)
    grid = GridSpec((-3.0, -2.0, -1.0), (3.0, 2.0, 1.0), (12, 5, 4))     # 0.5 x 0.8 x 0.5 m voxels
    occ = torch.rand(2, 12, 5, 4, generator=gen) < 0.2
    labels = torch.where(occ, torch.tensor(4, dtype=torch.uint8), torch.tensor(FREE_LABEL, dtype=torch.uint8))
    got = occupancy_sdf(labels, grid, truncation=1.5)
    for b in range(2):
        torch.testing.assert_close(got[b], _brute_sdf(occ[b], grid, 1.5), atol=1e-5, rtol=0)
    assert (got[occ] < 0).all() and (got[~occ] > 0).all()


def test_occupancy_sdf_empty_and_full_grids_are_at_the_truncation():
    grid = GridSpec((0.0, 0.0, 0.0), (2.0, 2.0, 2.0), (2, 2, 2))
    free = torch.full((1, 2, 2, 2), FREE_LABEL, dtype=torch.uint8)
    assert torch.equal(occupancy_sdf(free, grid, 2.0), torch.full((1, 2, 2, 2), 2.0))
    assert torch.equal(occupancy_sdf(torch.zeros_like(free), grid, 2.0), torch.full((1, 2, 2, 2), -2.0))


@pytest.mark.parametrize("labels, match", [
    (torch.zeros(2, 2, 2, dtype=torch.uint8), r"\[B, X, Y, Z\]"),
    (torch.zeros(1, 2, 2, 2), "integer"),
    (torch.zeros(1, 3, 2, 2, dtype=torch.uint8), "cells"),
])
def test_occupancy_sdf_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        occupancy_sdf(labels, GridSpec((0.0, 0.0, 0.0), (2.0, 2.0, 2.0), (2, 2, 2)))
    with pytest.raises(ValueError, match="truncation"):
        occupancy_sdf(torch.zeros(1, 2, 2, 2, dtype=torch.uint8), GridSpec((0.0, 0.0, 0.0), (2.0, 2.0, 2.0),
                                                                            (2, 2, 2)), truncation=0)


# A box on the ground that moves sideways: ground truth on a 0.5 m grid, the field on a 1 m grid.
GT_GRID = GridSpec((-4.0, -4.0, -1.0), (4.0, 4.0, 1.0), (16, 16, 4))
FIELD_GRID = GridSpec((-4.0, -4.0, -1.0), (4.0, 4.0, 1.0), (8, 8, 2))
VELOCITY = (0.0, 3.0)     # m/s of the box


def _gt() -> GroundTruthBatch:
    labels = torch.full((1, *GT_GRID.cells), FREE_LABEL, dtype=torch.uint8)
    labels[..., 0] = 11                                      # the ground layer
    labels[0, 9:13, 4:8, 1:3] = 4                            # the box
    flow = torch.zeros(1, *GT_GRID.cells, 2)
    flow[0, 9:13, 4:8, 1:3] = torch.tensor(VELOCITY)
    mask = torch.ones(1, *GT_GRID.cells, dtype=torch.bool)
    return GroundTruthBatch(occupancy=labels, mask_camera=mask, mask_lidar=mask, grid=GT_GRID, flow=flow)


def _field(sdf: torch.Tensor, flow: torch.Tensor) -> SceneField:
    return SceneField(sdf=sdf, flow=flow, grid=FIELD_GRID)


def test_the_sdf_term_is_zero_at_the_truth_and_has_gradients():
    # ground truth whose cell centres are the field's vertices: the target is occupancy_sdf itself
    aligned = GridSpec((-4.5, -4.5, -1.5), (4.5, 4.5, 1.5), FIELD_GRID.vertex_shape)
    labels = torch.full((1, *aligned.cells), FREE_LABEL, dtype=torch.uint8)
    labels[..., 0] = 11
    labels[0, 5:7, 2:4, 1] = 4
    mask = torch.ones(1, *aligned.cells, dtype=torch.bool)
    gt = GroundTruthBatch(occupancy=labels, mask_camera=mask, mask_lidar=mask, grid=aligned)
    cfg = OccupancyLossConfig(truncation=2.0)
    zero_flow = torch.zeros(1, 2, *FIELD_GRID.vertex_shape)
    truth = occupancy_sdf(labels, aligned, 2.0)[:, None]
    at_truth = occupancy_losses(_field(truth, zero_flow), gt, 1, cfg)
    assert set(at_truth) == {"occ_sdf", "total"}                     # stage 1, no flow in the truth
    assert at_truth["occ_sdf"].item() == pytest.approx(0.0, abs=1e-6)
    flat = torch.full_like(truth, 0.7, requires_grad=True)
    wrong = occupancy_losses(_field(flat, zero_flow), gt, 1, cfg)
    torch.testing.assert_close(wrong["occ_sdf"], (0.7 - truth).abs().mean())
    wrong["total"].backward()
    assert flat.grad is not None and flat.grad.abs().sum() > 0
    # beyond the truncation only the sign matters: a prediction of +100 costs what +2 costs
    big = occupancy_losses(_field(torch.full_like(truth, 100.0), zero_flow), gt, 1, cfg)
    two = occupancy_losses(_field(torch.full_like(truth, 2.0), zero_flow), gt, 1, cfg)
    torch.testing.assert_close(big["occ_sdf"], two["occ_sdf"])
    # the weight scales the total
    half = occupancy_losses(_field(flat, zero_flow), gt, 1, OccupancyLossConfig(sdf=0.5))
    torch.testing.assert_close(half["total"], 0.5 * wrong["occ_sdf"])


def test_the_flow_term_is_zero_at_the_truth_and_weighs_moving_and_static_cells_alike():
    gt = _gt()
    sdf = torch.zeros(1, 1, *FIELD_GRID.vertex_shape)
    step = 0.5
    truth = torch.zeros(1, 2, *FIELD_GRID.vertex_shape)
    # the box's cells span x in [0.5, 2.5] m, y in [-2, 0] m, z in [-0.5, 0.5] m: the field's flow is
    # the box's displacement per step on every vertex that any box cell's trilinear stencil touches
    vx = FIELD_GRID.points("vertex")
    inside = (vx[..., 0] >= 0) & (vx[..., 0] <= 3) & (vx[..., 1] >= -3) & (vx[..., 1] <= 1)
    truth[0, 1][inside] = VELOCITY[1] * step
    # static cells next to the box share those vertices, so the truth field is not exactly zero
    # there; the term must be near zero and far below a field with no flow at all
    losses = occupancy_losses(_field(sdf, truth), gt, 2, OccupancyLossConfig(), step_seconds=step)
    none = occupancy_losses(_field(sdf, torch.zeros_like(truth)), gt, 2, OccupancyLossConfig(),
                            step_seconds=step)
    assert set(none) == {"occ_sdf", "occ_flow", "moving_fraction", "total"}
    moving = 32 / (32 + 256)                                  # 4 x 4 x 2 box cells, one 16 x 16 ground layer
    assert none["moving_fraction"].item() == pytest.approx(moving)
    # no flow: the moving cells each miss by |v| * step, the static ones not at all
    assert none["occ_flow"].item() == pytest.approx(VELOCITY[1] * step, rel=1e-5)
    assert losses["occ_flow"] < 0.5 * none["occ_flow"]
    # a constant displacement d everywhere costs |d| on the static mean and ||v step - d|| on the moving
    d = torch.zeros_like(truth)
    d[:, 1] = 0.5
    const = occupancy_losses(_field(sdf, d), gt, 2, OccupancyLossConfig(), step_seconds=step)
    assert const["occ_flow"].item() == pytest.approx(0.5 + (VELOCITY[1] * step - 0.5), rel=1e-5)
    flow = torch.zeros_like(truth, requires_grad=True)
    total = occupancy_losses(_field(sdf, flow), gt, 2, OccupancyLossConfig(sdf=0.0),
                             step_seconds=step)["total"]
    total.backward()
    assert flow.grad is not None and flow.grad[:, 1].abs().sum() > 0


def test_occupancy_losses_errors_name_what_is_wrong():
    gt = _gt()
    field = _field(torch.zeros(1, 1, *FIELD_GRID.vertex_shape), torch.zeros(1, 2, *FIELD_GRID.vertex_shape))
    with pytest.raises(ValueError, match="stage"):
        occupancy_losses(field, gt, 3)
    with pytest.raises(ValueError, match="step_seconds"):
        occupancy_losses(field, gt, 2, step_seconds=0.0)
    two = _field(torch.zeros(2, 1, *FIELD_GRID.vertex_shape), torch.zeros(2, 2, *FIELD_GRID.vertex_shape))
    with pytest.raises(ValueError, match="batch size"):
        occupancy_losses(two, gt, 1)
    with pytest.raises(TypeError, match="GroundTruthBatch"):
        occupancy_losses(field, {"occupancy": gt.occupancy}, 1)
    for name, value in itertools.product(("sdf", "flow", "moving_speed", "truncation"), (-1.0, float("nan"))):
        with pytest.raises(ValueError, match=f"OccupancyLossConfig.{name}"):
            OccupancyLossConfig(**{name: value})
