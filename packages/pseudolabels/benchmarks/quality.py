"""Quality and speed of the cues on a synthetic nuScenes world with oracle cues (``gt_cues/``).

Make the world, then run this script::

    python -m occflow_data.synth --layout nuscenes --out /tmp/synth --scenes 2 --frames 6
    python packages/pseudolabels/benchmarks/quality.py --root /tmp/synth [--limit 10]

For every keyframe with a next keyframe and every camera it compares against the writer's
oracle flow (``gt_cues/flow``: exact flow to the next keyframe, valid where visible in both):
  * direct keyframe-to-keyframe DIS (ultrafast / fast / medium),
  * chained DIS through the camera sweeps (the weight-free tracking stand-in),
and the geometric movable mask (LiDAR depth + ego-motion, :func:`geometric_movable_mask`)
against the dynamic pixels: oracle movable mask AND |GT flow - rigid flow of the GT depth| > 1 px.
EPE = mean end-point error (px) over GT-valid pixels; "EPE valid" over pixels the estimator also
marks valid; Fl = KITTI outlier rate (error > 3 px and > 5 % of |GT|). Times are per 6-camera
frame, one thread, on a machine shared with other jobs (noisy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import pseudolabels as pl
from pseudolabels._pipeline import DatasetConfig, _images


def _gt(root: Path, what: str, key: str) -> dict[str, np.ndarray]:
    with np.load(root / "gt_cues" / what / f"{key}.npz") as z:
        return {k: z[k] for k in z.files}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--thresholds", default="1,2,3,5,8")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = Path(args.root)
    readers = DatasetConfig("nuscenes", str(root), version=args.version).open()
    methods = {
        "DIS ultrafast, direct": ("direct", pl.DISFlow("ultrafast")),
        "DIS fast, direct": ("direct", pl.DISFlow("fast")),
        "DIS medium, direct": ("direct", pl.DISFlow("medium")),
        "DIS fast, chained": ("chain", pl.DISFlow("fast")),
        "DIS medium, chained": ("chain", pl.DISFlow("medium")),
    }
    stats = {
        m: {"epe": [], "epe_valid": [], "fl": [], "valid": [], "dyn_epe": [], "time": []} for m in methods
    }
    thresholds = [float(t) for t in args.thresholds.split(",")]
    mask_stats: dict[str, list[float]] = {}
    f16_flow, f16_depth = [], []
    count = 0
    for r in readers:
        for i in range(len(r)):
            info, nxt = r.frame_info(i), r.next_frame_info(i)
            if nxt is None:
                continue
            if args.limit is not None and count >= args.limit:
                break
            count += 1
            gt = _gt(root, "flow", info.key)
            gt_flow = torch.from_numpy(gt["flow"].astype(np.float32))
            gt_valid = torch.from_numpy(gt["valid"]) & torch.isfinite(gt_flow).all(1)
            gt_flow = torch.nan_to_num(gt_flow, nan=0.0, posinf=0.0, neginf=0.0)
            movable = torch.from_numpy(_gt(root, "mask", info.key)["mask"])
            gt_depth = torch.from_numpy(_gt(root, "depth", info.key)["depth"].astype(np.float32))
            imgs_t, imgs_t1 = _images(info), _images(nxt)
            between = r.frames_between(i)
            seq = [_images(f) for f in between]
            lidar = r.lidar_points(info)
            results = {}
            for name, (kind, est) in methods.items():
                t0 = time.perf_counter()
                out = []
                for c in range(len(imgs_t)):
                    if kind == "direct":
                        out.append(est.estimate(imgs_t[c], imgs_t1[c]))
                    else:
                        out.append(pl.ChainedFlowTracker(est).track(torch.stack([s[c] for s in seq])))
                stats[name]["time"].append(time.perf_counter() - t0)
                results[name] = out
                for c, (flow, valid) in enumerate(out):
                    m = gt_valid[c]
                    if m.sum() < 100:  # e.g. a camera facing a wall that the ego passes: no GT
                        continue
                    err = (flow - gt_flow[c]).norm(dim=0)
                    mag = gt_flow[c].norm(dim=0)
                    dyn_c = m & movable[c]
                    stats[name]["epe"].append(err[m].mean().item())
                    stats[name]["epe_valid"].append(
                        err[m & valid].mean().item() if (m & valid).any() else float("nan")
                    )
                    stats[name]["fl"].append(((err > 3) & (err > 0.05 * mag))[m].float().mean().item())
                    stats[name]["valid"].append(valid.float().mean().item())
                    if dyn_c.sum() > 20:
                        stats[name]["dyn_epe"].append(err[dyn_c].mean().item())
                    f16 = flow.half().float()
                    f16_flow.append((f16 - flow).abs().max().item())
            # masks
            for c in range(len(imgs_t)):
                k = torch.from_numpy(info.intrinsics[c])
                c2e = torch.from_numpy(info.cam_to_ego[c])
                motion = pl.camera_motion(
                    c2e,
                    torch.from_numpy(info.ego_to_global),
                    torch.from_numpy(nxt.cam_to_ego[c]),
                    torch.from_numpy(nxt.ego_to_global),
                )
                h, w = imgs_t[c].shape[-2:]
                depth = pl.lidar_depth_map(lidar, k, c2e, (h, w), min_depth=1.0)
                f16_depth.append((depth.half().float() - depth).abs().max().item())
                rigid, rvalid = pl.rigid_flow(gt_depth[c], k, motion)
                res = (gt_flow[c] - rigid).norm(dim=0)
                dynamic = movable[c] & gt_valid[c] & rvalid & (res > 1.0)
                if dynamic.sum() < 20:
                    continue
                for src in ("GT flow", "DIS medium, chained", "DIS medium, direct"):
                    if src == "GT flow":
                        flow, valid = gt_flow[c], gt_valid[c]
                    else:
                        flow, valid = results[src][c]
                    for thr in thresholds:
                        mk = pl.geometric_movable_mask(flow, valid, depth, k, motion, threshold_px=thr)
                        inter = (mk & dynamic).sum().item()
                        union = (mk | dynamic).sum().item()
                        mask_stats.setdefault(f"{src} | {thr:g} px", []).append(inter / max(union, 1))
                        both = mk & movable[c]  # with a perfect movable-class segmenter (paper: AND)
                        inter = (both & dynamic).sum().item()
                        union = (both | dynamic).sum().item()
                        mask_stats.setdefault(f"{src} AND movable | {thr:g} px", []).append(
                            inter / max(union, 1)
                        )
    h, w = imgs_t[0].shape[-2:]
    print(
        f"{count} keyframes x {len(imgs_t)} cameras, {h}x{w} px, camera sweeps between keyframes: "
        f"{len(between) - 2}"
    )
    print("| method | EPE px | EPE valid px | Fl % | valid % | EPE movable px | s / frame |")
    print("|---|---|---|---|---|---|---|")
    for name, s in stats.items():
        dyn = np.mean(s["dyn_epe"]) if s["dyn_epe"] else float("nan")
        print(
            f"| {name} | {np.mean(s['epe']):.2f} | {np.nanmean(s['epe_valid']):.2f} | "
            f"{100 * np.mean(s['fl']):.1f} | {100 * np.mean(s['valid']):.0f} | {dyn:.2f} | "
            f"{np.median(s['time']):.2f} |"
        )
    print("\n| geometric mask source, threshold | mean IoU vs GT dynamic | images |")
    print("|---|---|---|")
    for name, v in mask_stats.items():
        print(f"| {name} | {np.mean(v):.3f} | {len(v)} |")
    print(
        f"\nfloat16 storage: max |flow16 - flow32| = {max(f16_flow):.4f} px; "
        f"max |depth16 - depth32| = {max(f16_depth):.4f} m"
    )


if __name__ == "__main__":
    main()
