"""Public entry points reject bad arguments with errors that name them."""

from __future__ import annotations

import pytest

from occflow_data.synth import (
    KittiConfig,
    NuScenesConfig,
    Renderer,
    WorldConfig,
    camera_flow,
    make_world,
    nuscenes_rig,
    voxelize,
    write_nuscenes,
)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: make_world(-1, 5.0), ValueError, "seed"),
        (lambda: make_world(1, 0.0), ValueError, "duration"),
        (lambda: WorldConfig(turn_probability=2.0), ValueError, "turn_probability"),
        (lambda: WorldConfig(half_width=10.0), ValueError, "half_width"),
        (lambda: nuscenes_rig(4, 400), ValueError, "height"),
        (lambda: NuScenesConfig(scenes=11), ValueError, "scenes"),
        (lambda: NuScenesConfig(keyframes=1), ValueError, "keyframes"),
        (lambda: KittiConfig(frames=1), ValueError, "frames"),
        (lambda: KittiConfig(voxel_stride=0), ValueError, "voxel_stride"),
        (lambda: Renderer("world"), TypeError, "world"),
        (lambda: write_nuscenes("/nonexistent/folder", NuScenesConfig()), ValueError, "root"),
        (lambda: write_nuscenes("/tmp", KittiConfig()), TypeError, "config"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_bad_device_and_grid():
    world = make_world(0, 1.0)
    with pytest.raises(ValueError, match="device"):
        Renderer(world, device="tpu")
    with pytest.raises(TypeError, match="grid"):
        voxelize(world, 0.0, world.ego_pose(0.0), (200, 200, 16))
    with pytest.raises(TypeError, match="CameraFrame"):
        camera_flow(world, None, None, nuscenes_rig().cameras)


def test_public_names_resolve():
    import occflow_data.synth as synth

    assert len(synth.__all__) == len(set(synth.__all__))
    assert [n for n in synth.__all__ if not hasattr(synth, n)] == []
