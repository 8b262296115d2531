"""Loader throughput: samples/s of NuScenesSequences with 0, 2 and 4 DataLoader workers.

Reads a nuScenes-layout dataset written by the synthetic world (generated into a temporary
folder unless ``--root`` is given) with the Let Occ Flow sample recipe: 6 cameras, current frame +
2 history keyframes + next keyframe + an auxiliary earlier frame (a sweep), LiDAR, cached mask
and depth cues (and flow when the cache's flow files load), and Occ3D ground truth. The image
recipe is the paper's scaled to the synthetic images: input x0.88 cropped to (512, 1408) * H/900,
W/1600, loss x0.44 cropped to half of that (for 225 x 400 images: 128 x 352 and 64 x 176).

Throughput is measured in steady state (from the first batch to the last, so worker start-up is
reported separately). The CPU may be shared with other jobs: compare rows of one run only.

Usage::

    uv run python packages/occflow-data/benchmarks/bench_loader.py [--root DIR] [--samples 48]
        [--workers 0 2 4] [--height 225 --width 400 --scenes 2 --frames 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from occflow_data import ImageConfig, NuScenesSequences, SequenceConfig, collate_samples
from occflow_data.cues import CueFileError, load_cue


def _generate(root: Path, args) -> None:
    from occflow_data.synth import NuScenesConfig, write_nuscenes

    cfg = NuScenesConfig(scenes=args.scenes, keyframes=args.frames, seed=0, height=args.height,
                         width=args.width, camera_sweeps=args.camera_sweeps, lidar_sweeps=1)
    t = time.perf_counter()
    write_nuscenes(root, cfg)
    print(f"generated {args.scenes} scenes x {args.frames} keyframes at {args.height}x{args.width} "
          f"in {time.perf_counter() - t:.1f} s")


def _dataset(root: Path, height: int, width: int, cues: tuple[str, ...]) -> NuScenesSequences:
    size = (round(512 * height / 900), round(1408 * width / 1600))
    image = ImageConfig(input_scale=0.88, input_size=size, loss_scale=0.44,
                        loss_size=(size[0] // 2, size[1] // 2))
    config = SequenceConfig(history=2, image=image, occ_root=root, cue_cache=root / "gt_cues", cues=cues,
                            scene_start="pad")
    scenes = sorted(p.name for p in (root / "gts").iterdir())
    return NuScenesSequences(root, scenes, config, version="v1.0-mini", verbose=False)


def _measure(ds, workers: int, samples: int, batch: int) -> tuple[float, float]:
    """(steady-state samples/s, seconds to the first batch)."""
    indices = [i % len(ds) for i in range(samples)]
    loader = DataLoader(torch.utils.data.Subset(ds, indices), batch_size=batch, num_workers=workers,
                        collate_fn=collate_samples, shuffle=False)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    t1 = time.perf_counter()
    n = 0
    for b in it:
        n += b.batch_size
    t2 = time.perf_counter()
    return n / max(t2 - t1, 1e-9), t1 - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=None, help="existing synthetic nuScenes folder")
    p.add_argument("--samples", type=int, default=48)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    p.add_argument("--scenes", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--height", type=int, default=225)
    p.add_argument("--width", type=int, default=400)
    p.add_argument("--camera-sweeps", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = Path(tmp) / "nuscenes"
            root.mkdir()
            _generate(root, args)
        height, width = args.height, args.width
        cues: tuple[str, ...] = ("mask", "depth")
        probe = _dataset(root, height, width, cues)
        try:
            for i in range(len(probe)):
                load_cue(root / "gt_cues", "flow", probe.sample_key(i))
            cues = ("flow", "mask", "depth")
        except (CueFileError, FileNotFoundError) as err:
            print(f"note: flow cue not loaded ({str(err)[-70:]})")
        ds = _dataset(root, height, width, cues)
        s = ds[0]
        print(f"{len(ds)} samples; per sample: 6 cameras x {1 + len(s.history) + 2} frames, input "
              f"{tuple(s.current.images.shape[-2:])}, loss {tuple(s.current.loss_images.shape[-2:])}, "
              f"{s.current.lidar.shape[0]} LiDAR points, cues {sorted(s.current.cues)}, Occ3D GT")
        print(f"CPU: {os.cpu_count()} logical cores ({platform.processor() or platform.machine()}), "
              f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
        rows = []
        for workers in args.workers:
            rate, start = _measure(ds, workers, args.samples, args.batch)
            rows.append((workers, rate, start))
        base = rows[0][1]
        print(f"\n| workers | samples/s | vs {rows[0][0]} workers | first batch s |")
        print("|---|---|---|---|")
        for workers, rate, start in rows:
            print(f"| {workers} | {rate:.2f} | {rate / base:.2f}x | {start:.2f} |")


if __name__ == "__main__":
    main()
