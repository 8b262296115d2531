"""The same Warp kernels on CUDA give the same renderings as on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from occflow_data.synth import Renderer, make_world, nuscenes_rig
from occflow_data.synth._render import init_warp


@pytest.mark.cuda
def test_cuda_matches_cpu():
    wp = init_warp()
    if not wp.is_cuda_available():
        pytest.skip("no CUDA device")
    world = make_world(2, 2.0)
    rig = nuscenes_rig(48, 80, azimuth_bins=360)
    cpu, gpu = Renderer(world, "cpu"), Renderer(world, "cuda")
    a, b = cpu.render_cameras(1.0, rig.cameras), gpu.render_cameras(1.0, rig.cameras)
    same = (a.semantic == b.semantic).mean()
    assert same > 0.995
    both = (a.depth > 0) & (b.depth > 0)
    np.testing.assert_allclose(a.depth[both], b.depth[both], rtol=1e-3, atol=1e-3)
    assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() < 1.0
    la, lb = cpu.render_lidar(1.0, rig.lidar), gpu.render_lidar(1.0, rig.lidar)
    np.testing.assert_allclose(la.range_image, lb.range_image, atol=1e-3)
