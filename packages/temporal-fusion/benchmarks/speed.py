"""Forward + backward time and peak memory of each temporal fusion variant at the paper's size.

Run: ``uv run python packages/temporal-fusion/benchmarks/speed.py [--device cuda] [--grid 100 100 10]``.
Batch 1, 3 frames (2 history, without gradient as released), 192 channels, random poses.
Prints one table; ratios are relative to the paper's module (``slices_bfam``) when it runs. Timings are
medians of ``--iters`` runs after ``--warmup`` runs; peak memory is CUDA's allocator peak
above the inputs (CUDA only).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from temporal_fusion import PRESETS, VARIANTS, TemporalFusion


def _poses(b: int, h: int, generator: torch.Generator) -> torch.Tensor:
    poses = torch.eye(4).repeat(b, h, 1, 1)
    angle = torch.rand(b, h, generator=generator) * 0.2 - 0.1
    poses[:, :, 0, 0], poses[:, :, 0, 1] = angle.cos(), -angle.sin()
    poses[:, :, 1, 0], poses[:, :, 1, 1] = angle.sin(), angle.cos()
    poses[:, :, 0, 3] = -torch.rand(b, h, generator=generator) * 5.0
    return poses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--grid", type=int, nargs=3, default=(100, 100, 10), metavar=("X", "Y", "Z"))
    parser.add_argument("--channels", type=int, default=192)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--checkpoint", action="store_true", help="activation checkpointing of BFAM steps")
    parser.add_argument("--chunk", type=int, default=1, help="maps per checkpointed chunk")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    device = torch.device(args.device)
    base = dataclasses.replace(PRESETS["letoccflow_nuscenes"], channels=args.channels,
                               checkpoint=args.checkpoint, checkpoint_chunk=args.chunk)
    g = torch.Generator().manual_seed(0)
    volumes = torch.randn(args.batch, base.num_history + 1, args.channels, *args.grid, generator=g).to(device)
    poses = _poses(args.batch, base.num_history, g).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device={device} ({name}) batch={args.batch} frames={base.num_history + 1} "
          f"channels={args.channels} grid={tuple(args.grid)} checkpoint={args.checkpoint} "
          f"chunk={args.chunk} "
          f"torch={torch.__version__}")
    rows = []
    for variant in args.variants:
        model = TemporalFusion(dataclasses.replace(base, variant=variant)).to(device)
        x = volumes.clone().requires_grad_(True)
        times = []
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            start_mem = torch.cuda.memory_allocated(device)
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            out = model(x, poses)
            out.square().mean().backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
            x.grad = None
        peak = float("nan")
        if device.type == "cuda":
            peak = (torch.cuda.max_memory_allocated(device) - start_mem) / 2**20
        rows.append((variant, statistics.median(times) * 1e3, peak))
    ref = "slices_bfam" if "slices_bfam" in args.variants else args.variants[-1]
    ref_t = next(t for v, t, _ in rows if v == ref)
    ref_m = next(m for v, _, m in rows if v == ref)
    print(f"| {'variant':<12} | {'fwd+bwd ms':>10} | {'x ours':>6} | {'peak MiB':>9} | {'x ours':>6} |")
    print(f"|{'-' * 14}|{'-' * 12}|{'-' * 8}|{'-' * 11}|{'-' * 8}|")
    for variant, t, m in rows:
        print(f"| {variant:<12} | {t:10.1f} | {t / ref_t:6.2f} | {m:9.0f} | {m / ref_m:6.2f} |")


if __name__ == "__main__":
    main()
