"""Schema dataclasses: validation, device moves, collation."""

from __future__ import annotations

import math

import pytest
import torch

from occflow_data import (
    Batch,
    Frame,
    GroundTruth,
    Sample,
    collate_samples,
    relative_pose,
)
from volrender import GridSpec


def _rot_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def make_frame(gen: torch.Generator, n: int = 2, hw=(8, 12), loss_hw=(4, 6), points: int | None = 20,
               cues: bool = True, t: float = 0.0) -> Frame:
    h, w = loss_hw
    k = torch.tensor([[10.0, 0, 6.0], [0, 10.0, 4.0], [0, 0, 1]]).expand(n, 3, 3).clone()
    cam = torch.eye(4).expand(n, 4, 4).clone()
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = _rot_z(float(torch.rand((), generator=gen)))
    pose[:3, 3] = torch.rand(3, generator=gen, dtype=torch.float64) * 100
    cue_dict = {}
    if cues:
        cue_dict = {
            "flow": torch.randn(n, 2, h, w, generator=gen),
            "flow_valid": torch.rand(n, h, w, generator=gen) > 0.5,
            "movable": torch.rand(n, h, w, generator=gen) > 0.5,
            "lidar_depth": torch.rand(n, h, w, generator=gen) * 10,
        }
    return Frame(
        images=torch.rand(n, 3, *hw, generator=gen),
        intrinsics=k,
        cam_to_ego=cam,
        ego_to_global=pose,
        timestamp=t,
        lidar=None if points is None else torch.randn(points, 3, generator=gen),
        loss_images=torch.rand(n, 3, h, w, generator=gen),
        loss_intrinsics=k * 0.5,
        cues=cue_dict,
    )


def make_gt(gen: torch.Generator, flow: bool = True) -> GroundTruth:
    grid = GridSpec((-2.0, -2.0, -1.0), (2.0, 2.0, 1.0), (4, 4, 2))
    return GroundTruth(
        occupancy=torch.randint(0, 18, (4, 4, 2), generator=gen, dtype=torch.uint8),
        mask_camera=torch.rand(4, 4, 2, generator=gen) > 0.5,
        mask_lidar=torch.rand(4, 4, 2, generator=gen) > 0.5,
        grid=grid,
        flow=torch.randn(4, 4, 2, 2, generator=gen) if flow else None,
    )


def make_sample(gen: torch.Generator, history: int = 2, points: int = 20, **kw) -> Sample:
    return Sample(
        current=make_frame(gen, points=points, t=1.0),
        history=[make_frame(gen, points=points, t=0.5 * i) for i in range(history)],
        next=make_frame(gen, points=points, t=1.5),
        aux_prev=make_frame(gen, points=points, t=0.7),
        gt=make_gt(gen),
        meta={"dataset": "test", "scene": "s", "token": "tok", "index": 0},
        **kw,
    )


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_frame_valid(gen):
    f = make_frame(gen)
    assert f.num_cameras == 2 and f.image_size == (8, 12)
    assert isinstance(f.timestamp, float)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("images", torch.zeros(2, 4, 8, 12),
         r"Frame.images must have shape \[N, 3, H, W\], got \(2, 4, 8, 12\)"),
        ("images", torch.zeros(2, 3, 8, 12, dtype=torch.float64), "Frame.images must be float32"),
        ("images", torch.full((2, 3, 8, 12), 255.0), r"Frame.images values must lie in \[0, 1\]"),
        ("intrinsics", torch.eye(3).expand(3, 3, 3), r"Frame.intrinsics must have shape \[N=2, 3, 3\]"),
        ("intrinsics", torch.zeros(2, 3, 3), "positive focal"),
        ("cam_to_ego", torch.eye(4).expand(1, 4, 4), r"Frame.cam_to_ego must have shape \[N=2, 4, 4\]"),
        ("cam_to_ego", torch.ones(2, 4, 4), "last row"),
        ("ego_to_global", torch.eye(4), "Frame.ego_to_global must be float64"),
        ("ego_to_global", torch.eye(3, dtype=torch.float64), r"Frame.ego_to_global must have shape \[4, 4\]"),
        ("lidar", torch.zeros(5, 4), r"Frame.lidar must have shape \[P, 3\]"),
        ("lidar", torch.full((5, 3), float("nan")), "Frame.lidar must contain only finite"),
        ("loss_intrinsics", None, "must be given together"),
        ("cues", {"flow": torch.zeros(2, 3, 4, 6)}, r"Frame.cues\['flow'\] must have shape \[N=2, 2, h, w\]"),
        ("cues", {"movable": torch.zeros(2, 4, 6)}, r"Frame.cues\['movable'\] must be a bool tensor"),
        ("cues", {"lidar_depth": torch.zeros(2, 5, 6)},
         r"must be at the loss resolution \(h, w\) = \(4, 6\)"),
        ("cues", {"other": torch.zeros(3, 5)}, r"Frame.cues\['other'\] must have shape \[N=2, ...\]"),
    ],
)
def test_frame_rejects(gen, field, value, match):
    f = make_frame(gen)
    kwargs = {k: getattr(f, k) for k in f.__dataclass_fields__}
    kwargs[field] = value
    with pytest.raises(ValueError, match=match):
        Frame(**kwargs)


def test_frame_type_errors(gen):
    f = make_frame(gen)
    kwargs = {k: getattr(f, k) for k in f.__dataclass_fields__}
    with pytest.raises(TypeError, match="Frame.images must be a torch.Tensor"):
        Frame(**{**kwargs, "images": [[0.0]]})
    with pytest.raises(TypeError, match="Frame.timestamp must be a float"):
        Frame(**{**kwargs, "timestamp": "now"})


def test_ground_truth_rejects(gen):
    g = make_gt(gen)
    kw = {k: getattr(g, k) for k in g.__dataclass_fields__}
    with pytest.raises(ValueError, match="labels must lie in 0..17"):
        GroundTruth(**{**kw, "occupancy": torch.full((4, 4, 2), 18, dtype=torch.uint8)})
    with pytest.raises(ValueError, match=r"GroundTruth.mask_lidar must have shape"):
        GroundTruth(**{**kw, "mask_lidar": torch.zeros(4, 4, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"GroundTruth.flow must have shape \[X, Y, Z, 2\]"):
        GroundTruth(**{**kw, "flow": torch.zeros(4, 4, 2, 3)})
    with pytest.raises(ValueError, match="grid.cells must equal the occupancy shape"):
        GroundTruth(**{**kw, "grid": GridSpec((0, 0, 0), (1, 1, 1), (4, 4, 4))})


def test_sample_rejects_mismatched_frames(gen):
    with pytest.raises(ValueError, match=r"Sample.history\[0\] has 3 cameras, expected N=2"):
        Sample(current=make_frame(gen), history=[make_frame(gen, n=3)])
    with pytest.raises(ValueError, match=r"Sample.history\[0\].images must be \[N, 3, 8, 12\]"):
        Sample(current=make_frame(gen), history=[make_frame(gen, hw=(8, 14))])
    with pytest.raises(TypeError, match="Sample.next must be a Frame"):
        Sample(current=make_frame(gen), next="x")


def test_collate_shapes_and_lidar_padding(gen):
    samples = [make_sample(gen, points=p) for p in (5, 9, 7)]
    batch = collate_samples(samples)
    assert isinstance(batch, Batch) and batch.batch_size == 3
    assert batch.current.images.shape == (3, 2, 3, 8, 12)
    assert batch.current.ego_to_global.dtype == torch.float64
    assert batch.current.timestamp.tolist() == [1.0, 1.0, 1.0]
    assert len(batch.history) == 2 and batch.history[1].cam_to_ego.shape == (3, 2, 4, 4)
    assert batch.next.cues["flow"].shape == (3, 2, 2, 4, 6)
    assert batch.current.lidar.shape == (3, 9, 3)
    assert batch.current.lidar_mask.sum(1).tolist() == [5, 9, 7]
    for b, s in enumerate(samples):
        torch.testing.assert_close(batch.current.lidar[b][batch.current.lidar_mask[b]], s.current.lidar)
        torch.testing.assert_close(batch.history[0].images[b], s.history[0].images)
        torch.testing.assert_close(batch.gt.flow[b], s.gt.flow)
    assert not batch.current.lidar[0, 5:].any()
    assert batch.gt.occupancy.shape == (3, 4, 4, 2)
    assert [m["token"] for m in batch.meta] == ["tok"] * 3


def test_collate_rejects_bad_batches(gen):
    with pytest.raises(ValueError, match=r"every Sample.history must have the same length, got \[2, 1\]"):
        collate_samples([make_sample(gen), make_sample(gen, history=1)])
    a, b = make_sample(gen), make_sample(gen)
    b.next = None
    with pytest.raises(ValueError, match="Sample.next is None in some samples"):
        collate_samples([a, b])
    with pytest.raises(ValueError, match="non-empty"):
        collate_samples([])
    c = Sample(current=make_frame(gen, hw=(8, 16)))
    d = Sample(current=make_frame(gen))
    with pytest.raises(ValueError, match="current.images has different shapes"):
        collate_samples([c, d])


def test_to_device_keeps_values(gen):
    s = make_sample(gen)
    moved = s.to("cpu")
    assert moved is not s and moved.history[1] is not s.history[1]
    torch.testing.assert_close(moved.history[1].images, s.history[1].images)
    batch = collate_samples([s, make_sample(gen)]).to("meta")
    assert batch.current.images.device.type == "meta"
    assert batch.history[0].cues["movable"].device.type == "meta"
    assert batch.gt.occupancy.device.type == "meta" and batch.gt.grid == s.gt.grid
    assert batch.current.ego_to_global.dtype == torch.float64


def test_relative_pose_moves_points_between_frames(gen):
    src = torch.eye(4, dtype=torch.float64)
    src[:3, :3] = _rot_z(0.3)
    src[:3, 3] = torch.tensor([10.0, -4.0, 1.0], dtype=torch.float64)
    tgt = torch.eye(4, dtype=torch.float64)
    tgt[:3, :3] = _rot_z(-1.1)
    tgt[:3, 3] = torch.tensor([3.0, 2.0, 0.0], dtype=torch.float64)
    p_src = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    world = p_src @ src[:3, :3].T + src[:3, 3]
    expected = (world - tgt[:3, 3]) @ tgt[:3, :3]
    rel = relative_pose(src, tgt)
    torch.testing.assert_close(p_src @ rel[:3, :3].T + rel[:3, 3], expected)
    with pytest.raises(ValueError, match=r"target_to_global must have shape \[..., 4, 4\]"):
        relative_pose(src, torch.eye(3))
