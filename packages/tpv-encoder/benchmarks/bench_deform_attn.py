"""ms_deform_attn: recomputing backward (the package's) vs plain autograd through grid_sample.

Usage: python benchmarks/bench_deform_attn.py [--device cuda] [--queries 20000] [--repeats 10]

Shapes default to one image cross-attention call of the nuScenes preset's ZH plane: 6 cameras,
6 heads x 32 channels, 4 FPN levels of a 512x1408 image (strides 8..64), 96 points.
Prints one table: forward+backward time and peak memory, with ratios to plain autograd.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tpv_encoder._deform_attn import _ms_deform_attn_forward, ms_deform_attn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--points", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    dev = args.device
    shapes = torch.tensor([[64, 176], [32, 88], [16, 44], [8, 22]])
    S = int((shapes[:, 0] * shapes[:, 1]).sum())
    B, Q, H, D, L, P = args.batch, args.queries, 6, 32, 4, args.points
    gen = torch.Generator().manual_seed(0)
    value = torch.randn(B, S, H, D, generator=gen).to(dev).requires_grad_(True)
    loc = torch.rand(B, Q, H, L, P, 2, generator=gen).to(dev).requires_grad_(True)
    w = torch.rand(B, Q, H, L, P, generator=gen).softmax(-1).to(dev).requires_grad_(True)
    g = torch.randn(B, Q, H * D, generator=gen).to(dev)
    cuda = dev.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    shape_list = [tuple(s) for s in shapes.tolist()]
    variants = {"plain autograd": lambda: _ms_deform_attn_forward(value, shape_list, loc, w),
                "recompute (package)": lambda: ms_deform_attn(value, shapes, loc, w)}
    rows = {}
    for name, fn in variants.items():
        for _ in range(2):
            (fn() * g).sum().backward()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        times = []
        for _ in range(args.repeats):
            value.grad = loc.grad = w.grad = None
            sync()
            t0 = time.perf_counter()
            (fn() * g).sum().backward()
            sync()
            times.append(time.perf_counter() - t0)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else float("nan")
        rows[name] = (1e3 * statistics.median(times), peak)
    ref_t, ref_m = rows["plain autograd"]
    print(f"device {dev}, B={B} Q={Q} heads={H} D={D} L={L} P={P} S={S}")
    print("| variant | fwd+bwd ms | time ratio | peak extra MiB | memory ratio |")
    print("|---|---|---|---|---|")
    for name, (t, m) in rows.items():
        print(f"| {name} | {t:.2f} | {t / ref_t:.2f} | {m:.0f} | {m / ref_m:.2f} |")


if __name__ == "__main__":
    main()
