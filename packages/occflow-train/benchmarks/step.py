"""Time and memory of one training step (model forward, losses, backward, AdamW) per model preset.

Random images, cues and LiDAR with the preset's resolutions (nuScenes: 6 cameras, 512 x 1408
input, 256 x 704 loss images). Prints one table row per configuration.

    uv run python packages/occflow-train/benchmarks/step.py --preset synthetic-cpu --backend warp
    python packages/occflow-train/benchmarks/step.py --preset nuscenes --device cuda --backend torch
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch

from occflow_data import Frame, Sample, collate_samples
from occflow_train import MODEL_PRESETS, LossConfig, OccFlowModel, RenderConfig, compute_losses

#: (cameras, input (H, W), loss (h, w), rays per camera) per preset
SIZES = {"nuscenes": (6, (512, 1408), (256, 704), (32, 88)),
         "kitti": (1, (352, 1216), (176, 608), (44, 152)),
         "synthetic-cpu": (6, (96, 176), (96, 176), (16, 32))}


def _rig(n: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    H, W = size
    r0 = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    c2e = []
    for i in range(n):
        a = 2 * math.pi * i / n
        m = torch.eye(4)
        m[:3, :3] = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0],
                                  [0.0, 0.0, 1.0]]) @ r0
        m[:3, 3] = torch.tensor([math.cos(a), math.sin(a), 1.6])
        c2e.append(m)
    f = W / 2 / math.tan(0.6)
    K = torch.tensor([[f, 0.0, W / 2], [0.0, f, H / 2], [0.0, 0.0, 1.0]]).expand(n, 3, 3).clone()
    return K, torch.stack(c2e)


def make_sample(preset: str, g: torch.Generator) -> Sample:
    n, size, loss_size, _ = SIZES[preset]
    K, c2e = _rig(n, size)
    Kl, _ = _rig(n, loss_size)
    h, w = loss_size

    def frame(x: float, cues: bool = False) -> Frame:
        pose = torch.eye(4, dtype=torch.float64)
        pose[0, 3] = x
        extra = {}
        if cues:
            extra = {"flow": torch.randn(n, 2, h, w, generator=g),
                     "flow_valid": torch.ones(n, h, w, dtype=torch.bool),
                     "movable": torch.rand(n, h, w, generator=g) > 0.8}
        return Frame(images=torch.rand(n, 3, *size, generator=g), intrinsics=K, cam_to_ego=c2e,
                     ego_to_global=pose, timestamp=x, loss_images=torch.rand(n, 3, h, w, generator=g),
                     loss_intrinsics=Kl, cues=extra, lidar=torch.randn(30000, 3, generator=g) * 10)
    return Sample(current=frame(0.0, True), history=[frame(-2.0), frame(-1.0)], next=frame(1.0),
                  aux_prev=frame(-0.5))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="synthetic-cpu", choices=sorted(MODEL_PRESETS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="warp", choices=["warp", "torch"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--samples", type=int, default=256, help="samples per ray")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    batch = collate_samples([make_sample(a.preset, g) for _ in range(a.batch)]).to(a.device)
    torch.manual_seed(0)
    model = OccFlowModel(a.preset).to(a.device)
    opt = torch.optim.AdamW(model.parameters(), 1e-4, weight_decay=0.01)
    render = RenderConfig(rays_per_camera=SIZES[a.preset][3], n_samples=a.samples, backend=a.backend)
    cuda = a.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()
    print("| preset | device | backend | B | stage | forward s | losses s | backward+step s | peak memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    for step in range(a.steps):
        stage = 1 if step == 0 else 2
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.perf_counter()
        field = model(batch)
        sync()
        t1 = time.perf_counter()
        losses = compute_losses(field, batch, stage, LossConfig(), render, inv_s=model.inv_s(), generator=g)
        sync()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()
        sync()
        t3 = time.perf_counter()
        mem = (f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB allocated" if cuda
               else f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB RSS")
        print(f"| {a.preset} | {a.device} | {a.backend} | {a.batch} | {stage} | {t1 - t0:.2f} | "
              f"{t2 - t1:.2f} | {t3 - t2:.2f} | {mem} |", flush=True)


if __name__ == "__main__":
    main()
