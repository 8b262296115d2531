"""Parameters, forward / forward+backward time and peak memory of the TPV encoder presets.

Usage: python benchmarks/bench_encoder.py [--presets tiny nuscenes kitti] [--device cpu|cuda]
                                          [--repeats 5] [--no-backward] [--threads 2]
                                          [--grad-checkpoint] [--amp]

Each preset runs in its own subprocess so that CPU peak RSS is per preset. Images are random,
the camera rig is a ring of N cameras (6 for nuScenes-like presets, 1 for kitti) at 1.5 m.
Prints one table (median times).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

CAMERAS = {"nuscenes": 6, "kitti": 1, "tiny": 6}


def rig(B: int, N: int, H: int, W: int, fov_deg: float = 70.0):
    import torch

    f = W / 2 / math.tan(math.radians(fov_deg) / 2)
    K = torch.tensor([[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]])
    mats = []
    for n in range(N):
        yaw = 2 * math.pi * n / N
        T = torch.eye(4)
        T[:3, 0] = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0])
        T[:3, 1] = torch.tensor([0.0, 0.0, -1.0])
        T[:3, 2] = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
        T[:3, 3] = torch.tensor([0.5, 0.0, 1.5])
        mats.append(T)
    return K.expand(B, N, 3, 3).clone(), torch.stack(mats).expand(B, N, 4, 4).clone()


def run_one(name: str, device: str, repeats: int, backward: bool, threads: int, ckpt: bool,
            amp: bool) -> dict:
    import contextlib
    import dataclasses

    import torch

    from tpv_encoder import PRESETS, TPVEncoder

    torch.set_num_threads(threads)
    cfg = dataclasses.replace(PRESETS[name], grad_checkpoint=ckpt)
    torch.manual_seed(0)
    enc = TPVEncoder(cfg).to(device).train()
    n_params = sum(p.numel() for p in enc.parameters())
    n_backbone = sum(p.numel() for p in enc.backbone.body.parameters())
    N = CAMERAS[name]
    H, W = cfg.image_size
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(1, N, 3, H, W, generator=gen).to(device)
    K, T = (t.to(device) for t in rig(1, N, H, W))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step(bwd: bool) -> float:
        sync()
        t0 = time.perf_counter()
        if bwd:
            with autocast():
                loss = enc(images, K, T).float().square().mean()
            loss.backward()
        else:
            with torch.no_grad(), autocast():
                enc(images, K, T)
        sync()
        return time.perf_counter() - t0

    autocast = (lambda: torch.autocast(device.split(":")[0], dtype=torch.bfloat16)) if amp \
        else contextlib.nullcontext
    out = {"preset": name + (" +ckpt" if ckpt else "") + (" +bf16" if amp else ""),
           "params_M": n_params / 1e6, "backbone_M": n_backbone / 1e6, "cameras": N, "image": f"{H}x{W}",
           "tpv": "x".join(map(str, cfg.cells)), "device": device}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    step(False)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    out["fwd_ms"] = 1e3 * statistics.median(step(False) for _ in range(repeats))

    def backbone_only() -> float:
        sync()
        t0 = time.perf_counter()
        with torch.no_grad(), autocast():
            enc.image_features(images)
        sync()
        return time.perf_counter() - t0

    out["backbone_fwd_ms"] = 1e3 * statistics.median(backbone_only() for _ in range(repeats))
    if device.startswith("cuda"):
        out["fwd_peak_GiB"] = (torch.cuda.max_memory_allocated() - base) / 2**30
    if backward:
        step(True)
        enc.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            times.append(step(True))
            enc.zero_grad(set_to_none=True)
        out["fwd_bwd_ms"] = 1e3 * statistics.median(times)
        if device.startswith("cuda"):
            out["train_peak_GiB"] = (torch.cuda.max_memory_allocated() - base) / 2**30
    out["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out["rss_before_GiB"] = rss0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grad-checkpoint", action="store_true", help="recompute each layer in backward")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.device, args.repeats, not args.no_backward, args.threads,
                                  args.grad_checkpoint, args.amp)))
        return
    rows = []
    for name in args.presets:
        cmd = [sys.executable, __file__, "--one", name, "--device", args.device,
               "--repeats", str(args.repeats), "--threads", str(args.threads)]
        cmd += ["--no-backward"] if args.no_backward else []
        cmd += ["--grad-checkpoint"] if args.grad_checkpoint else []
        cmd += ["--amp"] if args.amp else []
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            print(f"{name}: failed\n{res.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    keys = ["preset", "device", "cameras", "image", "tpv", "params_M", "backbone_M", "fwd_ms",
            "backbone_fwd_ms", "fwd_bwd_ms", "fwd_peak_GiB", "train_peak_GiB", "peak_rss_GiB"]
    keys = [k for k in keys if any(k in r for r in rows)]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        cells = [f"{r[k]:.2f}" if isinstance(r.get(k), float) else str(r.get(k, "-")) for k in keys]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
