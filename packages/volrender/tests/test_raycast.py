"""raycast_voxels: hand-made scenes with known answers, Warp vs the PyTorch reference, bad input."""

import math

import pytest
import torch

from volrender import OCC3D_NUSCENES, GridSpec, VoxelHits, raycast_voxels

BACKENDS = ["warp", "torch"]
UNIT = GridSpec((0.0, 0.0, 0.0), (8.0, 8.0, 4.0), (8, 8, 4))


def _rays(*pairs, dtype=torch.float64):
    o = torch.tensor([[p[0] for p in pairs]], dtype=dtype)
    d = torch.tensor([[p[1] for p in pairs]], dtype=dtype)
    return o, d / d.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wall_at_known_distance_occ3d_grid(backend):
    # A wall filling the cells with x index 150 (x in [20, 20.4) m) of the Occ3D grid.
    occ = torch.zeros(1, 200, 200, 16, dtype=torch.bool)
    occ[0, 150] = True
    o, d = _rays(((0.1, 0.0, 1.0), (1.0, 0.0, 0.0)), ((0.1, 0.0, 1.0), (-1.0, 0.0, 0.0)),
                 ((0.1, 0.0, 1.0), (3.0, 4.0, 0.0)), dtype=torch.float32)
    out = raycast_voxels(occ, OCC3D_NUSCENES, o, d, 200.0, backend=backend)
    assert isinstance(out, VoxelHits)
    assert out.hit.tolist() == [[True, False, True]]
    assert out.entry[0, 0].item() == pytest.approx(19.9, abs=1e-5)
    assert out.exit[0, 0].item() == pytest.approx(20.3, abs=1e-5)
    assert out.index[0, 0].tolist() == [150, 100, 5]
    # Backwards the ray leaves the box at x = -40 m without a hit.
    assert out.entry[0, 1].item() == pytest.approx(40.1, abs=1e-5)
    assert out.exit[0, 1].item() == pytest.approx(40.1, abs=1e-5)
    assert out.index[0, 1].tolist() == [-1, -1, -1]
    # Oblique ray (3, 4, 0)/5 reaches x = 20 m after (20 - 0.1) / 0.6 m, at y = 26.53 m, and leaves
    # the cell through its face y = 26.8 m (before x = 20.4 m) after 26.8 / 0.8 m.
    assert out.entry[0, 2].item() == pytest.approx(19.9 / 0.6, abs=1e-4)
    assert out.exit[0, 2].item() == pytest.approx(26.8 / 0.8, abs=1e-4)
    assert out.entry.dtype == torch.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_rays_starting_outside_enter_the_grid_first(backend):
    occ = torch.zeros(1, 8, 8, 4, dtype=torch.bool)
    occ[0, 0, 3, 1] = True   # first cell met by the first ray after entering through x = 0
    occ[0, 5, 3, 1] = True
    o, d = _rays(((-2.0, 3.5, 1.5), (1.0, 0.0, 0.0)), ((11.0, 3.5, 1.5), (-1.0, 0.0, 0.0)),
                 ((3.5, 3.5, 9.0), (0.0, 0.0, -1.0)))
    out = raycast_voxels(occ, UNIT, o, d, 100.0, backend=backend)
    assert out.hit.tolist() == [[True, True, False]]
    assert out.entry[0, :2].tolist() == [2.0, 5.0]
    assert out.exit[0, :2].tolist() == [3.0, 6.0]
    assert out.index[0, :2].tolist() == [[0, 3, 1], [5, 3, 1]]
    assert out.entered.tolist() == [[True, True, True]]
    # The third ray passes through the column (3, 3, :), all free: leaves at z = 0, 9 m away.
    assert out.entry[0, 2].item() == 9.0 and out.exit[0, 2].item() == 9.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_rays_that_miss(backend):
    occ = torch.ones(1, 8, 8, 4, dtype=torch.bool)
    o, d = _rays(((-1.0, 3.5, 1.5), (-1.0, 0.0, 0.0)),     # points away from the box
                 ((-1.0, 3.5, 1.5), (0.0, 1.0, 0.0)),      # parallel to the box, outside it
                 ((-1.0, -1.0, 1.5), (1.0, -1.0, 0.0)),    # diagonal, away
                 ((-5.0, 3.5, 1.5), (1.0, 0.0, 0.0)))      # towards it, but max_distance too short
    out = raycast_voxels(occ, UNIT, o, d, 4.5, backend=backend)
    assert out.hit.tolist() == [[False] * 4]
    assert out.entered.tolist() == [[False] * 4]
    assert out.index.eq(-1).all()
    assert out.entry.eq(0).all() and out.exit.eq(0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_distance_stops_the_ray(backend):
    occ = torch.zeros(1, 8, 8, 4, dtype=torch.bool)
    occ[0, 6] = True
    o, d = _rays(((0.5, 3.5, 1.5), (1.0, 0.0, 0.0)), ((0.5, 3.5, 1.5), (1.0, 0.0, 0.0)))
    short = raycast_voxels(occ, UNIT, o[:, :1], d[:, :1], 4.0, backend=backend)
    assert not short.hit.item() and short.entry.item() == 4.0 and short.exit.item() == 4.0
    # A cell entered before max_distance is a hit, and its exit is not clipped.
    just = raycast_voxels(occ, UNIT, o[:, :1], d[:, :1], 5.75, backend=backend)
    assert just.hit.item() and just.entry.item() == 5.5 and just.exit.item() == 6.5
    inf = raycast_voxels(occ, UNIT, o, d, math.inf, backend=backend)
    assert inf.hit.all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_axis_aligned_rays_on_cell_faces(backend):
    # A ray along x exactly on the face y = 3 between rows y = 2 and y = 3 belongs to row 3.
    occ = torch.zeros(1, 8, 8, 4, dtype=torch.bool)
    occ[0, 4, 2, 1] = True
    o, d = _rays(((0.5, 3.0, 1.5), (1.0, 0.0, 0.0)), ((0.5, 2.999, 1.5), (1.0, 0.0, 0.0)))
    out = raycast_voxels(occ, UNIT, o, d, 100.0, backend=backend)
    assert out.hit.tolist() == [[False, True]]
    assert out.entry[0, 0].item() == 7.5          # left the box at x = 8 through row 3
    occ[0, 4, 3, 1] = True
    out = raycast_voxels(occ, UNIT, o, d, 100.0, backend=backend)
    assert out.index[0].tolist() == [[4, 3, 1], [4, 2, 1]]
    assert out.entry[0].tolist() == [3.5, 3.5] and out.exit[0].tolist() == [4.5, 4.5]
    # Along z through the edge x = 4, y = 3: cell (4, 3, k), from the top face down.
    occ = torch.zeros(1, 8, 8, 4, dtype=torch.bool)
    occ[0, 4, 3, 0] = True
    o, d = _rays(((4.0, 3.0, 4.0), (0.0, 0.0, -1.0)))
    out = raycast_voxels(occ, UNIT, o, d, 100.0, backend=backend)
    assert out.index[0, 0].tolist() == [4, 3, 0] and out.entry.item() == 3.0 and out.exit.item() == 4.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_corner_crossings_step_z_then_y_then_x(backend):
    # Direction (1, 1, 0)/sqrt(2) from a cell centre crosses x = 1 and y = 1 at the same distance:
    # the traversal steps along y first, so cell (0, 1) is visited and (1, 0) never is.
    o, d = _rays(((0.5, 0.5, 0.5), (1.0, 1.0, 0.0)))
    only_10 = torch.zeros(1, 8, 8, 4, dtype=torch.bool)
    only_10[0, 1, 0, 0] = True
    only_01 = torch.zeros(1, 8, 8, 4, dtype=torch.bool)
    only_01[0, 0, 1, 0] = True
    assert not raycast_voxels(only_10, UNIT, o, d, 100.0, backend=backend).hit.item()
    out = raycast_voxels(only_01, UNIT, o, d, 100.0, backend=backend)
    assert out.hit.item() and out.entry.item() == out.exit.item() == pytest.approx(math.sqrt(0.5))
    # (1, 0, 1): a tie of x and z goes to z.
    o, d = _rays(((0.5, 0.5, 0.5), (1.0, 0.0, 1.0)))
    only_001 = torch.zeros(1, 8, 8, 4, dtype=torch.bool)
    only_001[0, 0, 0, 1] = True
    assert raycast_voxels(only_001, UNIT, o, d, 100.0, backend=backend).index[0, 0].tolist() == [0, 0, 1]


def _random_case(seed, dtype, batch=2, rays=3000, cells=(17, 12, 7)):
    g = torch.Generator().manual_seed(seed)
    grid = GridSpec((-4.0, -3.0, -1.0), (4.5, 5.0, 2.5), cells)
    occ = torch.rand(batch, *cells, generator=g) < 0.06
    lower, upper = torch.tensor(grid.lower), torch.tensor(grid.upper)
    o = lower - 1.5 + torch.rand(batch, rays, 3, generator=g) * (upper - lower + 3)
    d = torch.randn(batch, rays, 3, generator=g)
    d[:, : rays // 10, 2] = 0          # some rays parallel to the xy plane
    d[:, rays // 10: rays // 5, :2] = 0  # some vertical rays
    d = d / d.norm(dim=-1, keepdim=True)
    return occ, grid, o.to(dtype), d.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_warp_matches_reference_on_random_grids(dtype):
    occ, grid, o, d = _random_case(1, dtype)
    a = raycast_voxels(occ, grid, o, d, 12.0, backend="torch")
    b = raycast_voxels(occ, grid, o, d, 12.0, backend="warp")
    assert 0.1 < a.hit.float().mean() < 0.9          # a non-trivial mix of hits and misses
    assert a.entered.float().mean() < 0.95
    for name in ("hit", "entered", "index"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    torch.testing.assert_close(a.entry, b.entry, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.exit, b.exit, rtol=0, atol=1e-12)


def test_hits_agree_with_dense_sampling():
    """Property: the reported cell is the first occupied cell that dense samples along the ray find."""
    occ, grid, o, d = _random_case(2, torch.float64, batch=1, rays=400)
    out = raycast_voxels(occ, grid, o, d, 12.0, backend="warp")
    t = torch.arange(0.0, 12.0, 1e-3, dtype=torch.float64)
    pts = o[0, :, None] + t[None, :, None] * d[0, :, None]                  # [R, S, 3]
    idx = torch.floor(grid.world_to_grid(pts, "vertex")).long()
    inside = ((idx >= 0) & (idx < torch.tensor(grid.cells))).all(-1)
    idx_c = idx.clamp(min=torch.zeros(3, dtype=torch.long), max=torch.tensor(grid.cells) - 1)
    occ_s = occ[0][idx_c[..., 0], idx_c[..., 1], idx_c[..., 2]] & inside    # [R, S]
    first = torch.where(occ_s.any(1), occ_s.float().argmax(1), -1)
    agree = 0
    for r in range(o.shape[1]):
        if first[r] < 0:
            # Dense samples may skip a tiny corner clip; a reported hit then has a short chord.
            if out.hit[0, r]:
                assert (out.exit[0, r] - out.entry[0, r]).item() < 2e-3
            continue
        assert out.hit[0, r]
        ts = t[first[r]].item()
        assert out.entry[0, r].item() <= ts + 1e-9 and ts <= out.exit[0, r].item() + 1e-9
        assert out.index[0, r].tolist() == idx_c[r, first[r]].tolist() or \
            (out.exit[0, r] - out.entry[0, r]).item() < 2e-3
        agree += 1
    assert agree > 50


def test_empty_inputs():
    occ = torch.zeros(2, 8, 8, 4, dtype=torch.bool)
    out = raycast_voxels(occ, UNIT, torch.zeros(2, 0, 3), torch.zeros(2, 0, 3), 1.0)
    assert out.hit.shape == (2, 0) and out.index.shape == (2, 0, 3)


def test_bad_inputs():
    occ = torch.zeros(1, 8, 8, 4, dtype=torch.bool)
    o, d = _rays(((0.5, 0.5, 0.5), (1.0, 0.0, 0.0)))
    with pytest.raises(ValueError, match="occupied must be a bool"):
        raycast_voxels(occ.float(), UNIT, o, d, 1.0)
    with pytest.raises(ValueError, match=r"occupied must have shape \[B, 8, 8, 4\]"):
        raycast_voxels(occ[:, :4], UNIT, o, d, 1.0)
    with pytest.raises(TypeError, match="grid must be a volrender.GridSpec"):
        raycast_voxels(occ, (8, 8, 4), o, d, 1.0)
    with pytest.raises(ValueError, match="origins must have shape"):
        raycast_voxels(occ, UNIT, o[0], d[0], 1.0)
    with pytest.raises(ValueError, match="directions must have the shape"):
        raycast_voxels(occ, UNIT, o, d[:, :, :2], 1.0)
    with pytest.raises(ValueError, match="directions must be unit"):
        raycast_voxels(occ, UNIT, o, d * 2, 1.0)
    with pytest.raises(ValueError, match="origins must be finite"):
        raycast_voxels(occ, UNIT, o * math.nan, d, 1.0)
    with pytest.raises(ValueError, match="directions must have the dtype"):
        raycast_voxels(occ, UNIT, o, d.float(), 1.0)
    with pytest.raises(ValueError, match="max_distance must be > 0"):
        raycast_voxels(occ, UNIT, o, d, 0.0)
    with pytest.raises(TypeError, match="origins must be a torch.Tensor"):
        raycast_voxels(occ, UNIT, o.numpy(), d, 1.0)
    with pytest.raises(ValueError, match="backend must be"):
        raycast_voxels(occ, UNIT, o, d, 1.0, backend="numpy")


@pytest.mark.cuda
def test_cuda_matches_cpu_reference():
    occ, grid, o, d = _random_case(3, torch.float32, rays=20000)
    ref = raycast_voxels(occ, grid, o, d, 12.0, backend="torch")
    gpu = raycast_voxels(occ.cuda(), grid, o.cuda(), d.cuda(), 12.0, backend="warp")
    assert gpu.hit.is_cuda
    for name in ("hit", "entered", "index"):
        assert torch.equal(getattr(ref, name), getattr(gpu, name).cpu()), name
    torch.testing.assert_close(ref.entry, gpu.entry.cpu(), rtol=0, atol=1e-5)
    torch.testing.assert_close(ref.exit, gpu.exit.cpu(), rtol=0, atol=1e-5)


def test_cpu_launch_split_over_threads_matches_reference():
    # 2 x 20,000 rays: enough for the CPU launch to be split over torch.get_num_threads() threads.
    occ, grid, o, d = _random_case(4, torch.float64, rays=20000)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        split = raycast_voxels(occ, grid, o, d, 12.0, backend="warp")
        torch.set_num_threads(1)
        single = raycast_voxels(occ, grid, o, d, 12.0, backend="warp")
    finally:
        torch.set_num_threads(before)
    ref = raycast_voxels(occ, grid, o, d, 12.0, backend="torch")
    for out in (split, single):
        for name in ("hit", "entered", "index", "entry", "exit"):
            assert torch.equal(getattr(out, name), getattr(ref, name)), name
