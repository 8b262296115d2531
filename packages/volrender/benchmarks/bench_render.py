"""Benchmark of volrender's fused Warp ops against the pure-PyTorch reference (forward + backward).

Paper-sized case (Let Occ Flow, nuScenes): one batch of 16,896 camera rays x 256 samples on a
201 x 201 x 21 vertex grid with 1 SDF + 2 flow channels, and the reprojection op with K = 2
target images of 256 x 704. Every (op, backend) runs in its own subprocess so that its peak
extra memory is measured alone: on the CPU the growth of the resident set (Linux VmHWM, reset
after warm-up, minus the resident size before the timed runs), on CUDA
``torch.cuda.max_memory_allocated`` minus the memory allocated before.

Usage (one command)::

    uv run python packages/volrender/benchmarks/bench_render.py [--device cpu|cuda] [--quick] [--repeat N]

``--quick`` runs a 4x smaller case (fewer rays) for a smoke check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

import volrender

GRID = volrender.LETOCCFLOW_NUSCENES          # 200 x 200 x 20 cells -> 201 x 201 x 21 vertices
N_RAYS, N_SAMPLES, INV_S = 16_896, 256, 50.0
K_TARGETS, IMAGE_H, IMAGE_W = 2, 256, 704


# ------------------------------------------------------------------------------------------ inputs
def _scene(device: str, dtype: torch.dtype, n_rays: int, seed: int = 0):
    """A street-like SDF (ground at z = 0, a few boxes), smooth flow, and camera rays from 6 cameras."""
    g = torch.Generator().manual_seed(seed)
    pts = GRID.points("vertex", dtype=dtype)
    sdf = pts[..., 2].clone()                                          # ground plane z = 0
    for _ in range(40):                                                # boxes (cars, buildings)
        u = torch.rand(5, generator=g, dtype=dtype)
        c = torch.stack([80 * u[0] - 40, 80 * u[1] - 40, torch.zeros((), dtype=dtype)])
        h = torch.stack([1.0 + 4 * u[2], 1.0 + 2 * u[3], 0.8 + 3 * u[4]])
        q = (pts - c).abs() - h
        box = q.clamp(min=0).norm(dim=-1) + q.amax(dim=-1).clamp(max=0)
        sdf = torch.minimum(sdf, box)
    sdf = sdf + 0.05 * torch.randn(sdf.shape, generator=g, dtype=dtype)
    flow = 0.3 * torch.sin(pts[..., :2] / 5.0).permute(3, 0, 1, 2)
    # rays: 6 cameras at the ego origin, 1.5 m high, each a 32 x 88 ray image over a 70 x 30 degree view
    per_cam = n_rays // 6
    yaw = torch.arange(6, dtype=dtype) * (2 * math.pi / 6)
    az = (torch.rand((6, per_cam), generator=g, dtype=dtype) - 0.5) * math.radians(70) + yaw[:, None]
    el = -torch.rand((6, per_cam), generator=g, dtype=dtype) * math.radians(25) + math.radians(5)
    d = torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], dim=-1).reshape(1, -1, 3)
    o = torch.tensor([0.0, 0.0, 1.5], dtype=dtype).expand_as(d).contiguous()
    to = dict(device=device)
    return sdf[None, None].to(**to), flow[None].contiguous().to(**to), o.to(**to), d.to(**to)


def _targets(device: str, dtype: torch.dtype, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand((1, K_TARGETS, 3, IMAGE_H, IMAGE_W), generator=g, dtype=dtype)
    f = 0.5 * IMAGE_W
    intr = torch.tensor([[f, 0.0, IMAGE_W / 2], [0.0, f, IMAGE_H / 2], [0.0, 0.0, 1.0]], dtype=dtype)
    # target cameras looking along +x, 0.5 m and -0.5 m further along x (OpenCV axes: x right, y down)
    cam_from_ego = torch.tensor([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 1.5], [1.0, 0.0, 0.0, 0.0],
                                 [0.0, 0.0, 0.0, 1.0]], dtype=dtype)
    poses = []
    for dx in (0.5, -0.5)[:K_TARGETS]:
        shift = torch.eye(4, dtype=dtype)
        shift[0, 3] = -dx
        poses.append(cam_from_ego @ shift)
    src = torch.rand((1, N_RAYS, 3), generator=g, dtype=dtype)
    return (images.to(device), intr.expand(1, K_TARGETS, 3, 3).contiguous().to(device),
            torch.stack(poses)[None].to(device), src.to(device))


# ------------------------------------------------------------------------------------------ worker
def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _worker(op: str, backend: str, device: str, n_rays: int, repeat: int) -> dict:
    torch.manual_seed(0)
    dtype = torch.float32
    sdf0, flow0, o, d = _scene(device, dtype, n_rays)
    if op == "reprojection":
        images0, intr, poses, src = _targets(device, dtype)
        src = src[:, :o.shape[1]]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        sdf = sdf0.clone().requires_grad_()
        flow = flow0.clone().requires_grad_()
        inv_s = torch.tensor(INV_S, device=device, requires_grad=True)
        if op == "render":
            out = volrender.render_rays(sdf, flow, GRID, o, d, n_samples=N_SAMPLES, inv_s=inv_s,
                                        backend=backend)
            loss = out.depth.sum() + out.features.sum() + out.opacity.sum()
        else:
            images = images0.clone().requires_grad_()
            out = volrender.render_reprojection(sdf, flow, GRID, o, d, src, images, intr, poses,
                                                n_samples=N_SAMPLES, inv_s=inv_s, backend=backend)
            loss = out.colors.sum() + out.errors.sum()
        loss.backward()
        sync()

    step()                                    # warm-up: Warp module load / compile, allocator caches
    step()
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _status()["VmRSS"]
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")                     # reset the peak resident set size (VmHWM)
    cpu_times = []
    for _ in range(repeat):
        t = time.perf_counter()
        c = time.process_time()
        step()
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else _status()["VmHWM"]) - base
    return {"op": op, "backend": backend, "median_s": statistics.median(times), "min_s": min(times),
            "cpu_s": statistics.median(cpu_times),
            "peak_extra_mb": peak / 2**20, "rays": n_rays}


def _run_case(op: str, backend: str, device: str, n_rays: int, repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", op, backend, "--device", device, "--rays", str(n_rays),
           "--repeat", str(repeat)]
    # fixed glibc thresholds: large blocks are mmapped and given back on free, so the resident set
    # after warm-up is a fair baseline (the dynamic threshold would keep freed warm-up blocks resident)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark worker failed ({op}, {backend}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _bandwidth_bound(n_rays: int) -> str:
    """Bytes a fused fwd+bwd kernel must move, and the time they take at H100 (3.35 TB/s) bandwidth.

    Two bounds: (1) every byte touched once (grids read, gradients zeroed and written, per-ray data);
    (2) every trilinear gather served from DRAM (8 SDF corners per boundary, 8 x 2 flow corners per
    midpoint, forward and backward, plus the backward's read-modify-write scatters), all 256 samples.
    """
    nv = math.prod(GRID.vertex_shape)
    grid_bytes = nv * 4 * (1 + 2)                 # read sdf + flow once (float32)
    grad_bytes = nv * 4 * (1 + 2) * 2             # zero + write their gradients
    ray_bytes = n_rays * 4 * (3 + 3 + 2 + 4)      # origins, directions, segment, outputs
    unique = 2 * grid_bytes + grad_bytes + 3 * ray_bytes
    per_sample = 4 * (8 + 16)                     # gathered floats per sample
    gathers = n_rays * N_SAMPLES * per_sample * (2 + 2)   # fwd reads, bwd reads, bwd scatters (r+w)
    bw = 3.35e12
    return (f"memory-bandwidth bounds at 3.35 TB/s (H100 SXM HBM3): bytes touched once "
            f"{unique / 2**20:.1f} MiB -> {unique / bw * 1e3:.3f} ms; every gather from DRAM "
            f"{gathers / 2**30:.2f} GiB -> {gathers / bw * 1e3:.2f} ms (render fwd+bwd)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="4x fewer rays, 3 repeats")
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions (median reported)")
    ap.add_argument("--ops", default="render,reprojection")
    ap.add_argument("--worker", nargs=2, metavar=("OP", "BACKEND"), help=argparse.SUPPRESS)
    ap.add_argument("--rays", type=int, default=N_RAYS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], args.device, args.rays, args.repeat)))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    n_rays = N_RAYS // 4 if args.quick else N_RAYS
    repeat = 3 if args.quick else args.repeat
    ops = [op for op in args.ops.split(",") if op == "render" or hasattr(volrender, "render_reprojection")]
    machine = (torch.cuda.get_device_name() if args.device == "cuda" else
               f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
               f"{torch.get_num_threads()}")
    print(f"volrender {volrender.__version__}, torch {torch.__version__}, device {args.device}: {machine}")
    print(f"{n_rays} rays x {N_SAMPLES} samples, vertex grid {GRID.vertex_shape}, 1 sdf + 2 flow channels, "
          f"inv_s {INV_S}, float32, forward + backward, median of {repeat}")
    rows = []
    for op in ops:
        res = {b: _run_case(op, b, args.device, n_rays, repeat) for b in ("torch", "warp")}
        for b in ("torch", "warp"):
            r = res[b]
            rows.append((op + (f" (K={K_TARGETS}, {IMAGE_H}x{IMAGE_W})" if op == "reprojection" else ""), b,
                         r["median_s"] * 1e3, r["peak_extra_mb"], n_rays / r["median_s"],
                         res["torch"]["median_s"] / r["median_s"], r["cpu_s"] * 1e3,
                         res["torch"]["peak_extra_mb"] / max(r["peak_extra_mb"], 1e-3)))
    cpu_col = args.device == "cpu"
    print("| op | backend | fwd+bwd ms | " + ("process CPU ms | " if cpu_col else "")
          + "peak extra MiB | rays/s | speed-up vs torch | memory ratio |")
    print("|---|---|---|" + ("---|" if cpu_col else "") + "---|---|---|---|")
    for op, b, ms, mb, rps, sp, cpu_ms, mem in rows:
        cpu = f"{cpu_ms:.0f} | " if cpu_col else ""
        print(f"| {op} | {b} | {ms:.0f} | {cpu}{mb:.1f} | {rps:,.0f} | {sp:.1f}x | {mem:.1f}x |")
    if args.device == "cuda":
        print(_bandwidth_bound(n_rays))


if __name__ == "__main__":
    main()
