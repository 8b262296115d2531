"""RayIoU throughput: 100 frames of 200 x 200 x 16 with 8 ray origins each (14,040 rays per origin).

    uv run python packages/occflow-metrics/benchmarks/bench_rayiou.py [--device cuda] [--frames 100]

Scenes are random but structured (road, sidewalks, buildings, trees, cars, trucks, pedestrians), the
prediction is the GT with moved objects and label noise, so rays have realistic lengths. The timed
part is everything `rayiou_counts` does per frame (GT and prediction cast, counting, mAVE sums); scene
generation is not timed. The pure-PyTorch reference caster is timed on a few frames only (it is slow)
and its time per frame is extrapolated for the ratio column. Prints one table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from occflow_metrics import RayIoUAccumulator, lidar_ray_directions, rayiou_counts

FREE = 17


def make_frame(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gt labels, pred labels, gt flow, pred flow, origins [8, 3]) of one structured random frame."""
    g = torch.Generator().manual_seed(seed)

    def ri(lo, hi):
        return int(torch.randint(lo, hi, (1,), generator=g))

    gt = torch.full((200, 200, 16), FREE, dtype=torch.uint8)
    gt[:, :, :2] = 11                                    # road
    w0, w1 = ri(30, 60), ri(140, 170)
    gt[:, :w0, :2] = 13                                  # sidewalks
    gt[:, w1:, :2] = 13
    gt[:ri(20, 60), :, :2] = 14                          # terrain patch
    flow = torch.zeros(200, 200, 16, 2)
    x = 0
    while x < 200:                                       # buildings along both sides
        length, h = ri(8, 40), ri(6, 16)
        gt[x:x + length, : max(w0 - ri(5, 15), 1), 2:h] = 15
        gt[x:x + length, min(w1 + ri(5, 15), 199):, 2:ri(6, 16)] = 15
        x += length + ri(0, 6)
    for _ in range(ri(10, 30)):                          # trees and poles on the sidewalks
        tx, ty = ri(0, 196), ri(0, w0) if ri(0, 2) else ri(w1, 200)
        gt[tx:tx + 4, ty:ty + 4, 4:ri(8, 14)] = 16
        gt[tx + 1:tx + 3, ty + 1:ty + 3, 2:4] = 16
    for k in range(ri(15, 40)):                          # vehicles and pedestrians, with flow
        cls, size = ((4, (11, 5, 4)), (10, (20, 6, 8)), (7, (2, 2, 5)), (2, (4, 2, 4)))[k % 4]
        vx, vy = ri(0, 200 - size[0]), ri(w0, max(w1 - size[1], w0 + 1))
        gt[vx:vx + size[0], vy:vy + size[1], 2:2 + size[2]] = cls
        flow[vx:vx + size[0], vy:vy + size[1], 2:2 + size[2]] = torch.randn(2, generator=g) * 5
    pred = torch.roll(gt, shifts=(ri(-2, 3), ri(-2, 3)), dims=(0, 1))
    noise = torch.rand(200, 200, 16, generator=g)
    pred[(noise < 0.01) & (gt != FREE)] = FREE
    pred[(noise > 0.995) & (gt == FREE)] = 16
    pred_flow = torch.roll(flow, shifts=(1, 0), dims=(0, 1)) + 0.3 * torch.randn(200, 200, 16, 2, generator=g)
    origins = torch.zeros(8, 3, dtype=torch.float64)
    origins[:, 0] = torch.linspace(-30, 30, 8, dtype=torch.float64) + torch.rand(8, generator=g).double()
    origins[:, 1] = (torch.rand(8, generator=g).double() - 0.5) * 4
    origins[:, 2] = 1.84
    return gt, pred, flow, pred_flow, origins


def run(frames, device, backend):
    """(wall seconds, process CPU seconds, result) of RayIoU + mAVE over ``frames`` (already on device)."""
    directions = lidar_ray_directions().to(device)
    acc = RayIoUAccumulator()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    for gt, pred, gflow, pflow, origins in frames:
        acc = acc + rayiou_counts(pred, gt, origins, pred_flow=pflow, gt_flow=gflow, directions=directions,
                                  backend=backend)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu, acc.compute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--torch-frames", type=int, default=1, help="frames timed with the torch reference")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    distinct = [tuple(t.to(device) for t in make_frame(s)) for s in range(min(args.frames, 20))]
    frames = [distinct[i % len(distinct)] for i in range(args.frames)]
    rays = 2 * sum(f[4].shape[0] for f in frames) * 14040           # GT and prediction casts
    run(frames[:1], device, "warp")                                  # Warp init + kernel load, not timed
    t_warp, cpu_warp, res = run(frames, device, "warp")
    n_ref = max(0, min(args.torch_frames, args.frames))
    scale = args.frames / n_ref if n_ref else float("nan")
    t_ref, cpu_ref, _ = run(frames[:n_ref], device, "torch") if n_ref else (float("nan"),) * 3
    t_ref, cpu_ref = t_ref * scale, cpu_ref * scale
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"RayIoU + mAVE over {args.frames} frames x 8 origins x 14,040 rays ({rays / 1e6:.1f} M casts), "
          f"200x200x16, device {device} ({name}, {os.cpu_count()} CPUs), torch threads "
          f"{torch.get_num_threads()}; RayIoU {res['RayIoU']:.3f}, mAVE {res['mAVE']:.3f}")
    print(f"| backend | frames timed | wall s / {args.frames} frames | CPU s / {args.frames} frames | "
          "ms / frame | M rays / s | vs torch |")
    print("|---|---|---|---|---|---|---|")
    print(f"| warp | {args.frames} | {t_warp:.2f} | {cpu_warp:.2f} | {1e3 * t_warp / args.frames:.1f} | "
          f"{rays / t_warp / 1e6:.2f} | {f'{t_ref / t_warp:.0f}x' if n_ref else '-'} |")
    if n_ref:
        print(f"| torch reference | {n_ref} | {t_ref:.1f} (extrapolated) | {cpu_ref:.1f} | "
              f"{1e3 * t_ref / args.frames:.0f} | {rays / t_ref / 1e6:.3f} | 1x |")

if __name__ == "__main__":
    main()
