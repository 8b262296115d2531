"""Shared tiny synthetic datasets (generated once per test session into a temp folder)."""

from __future__ import annotations

import pytest

from occflow_data.synth import NuScenesConfig, write_nuscenes


@pytest.fixture(scope="session")
def tiny_nuscenes(tmp_path_factory):
    """Two scenes x 3 keyframes at 48 x 80 pixels, one camera sweep and two LiDAR sweeps per interval."""
    root = tmp_path_factory.mktemp("synth_nuscenes")
    cfg = NuScenesConfig(
        scenes=2,
        keyframes=3,
        seed=7,
        height=48,
        width=80,
        camera_sweeps=1,
        lidar_sweeps=2,
        lidar_azimuth_bins=360,
    )
    summary = write_nuscenes(root, cfg)
    return root, cfg, summary
