"""Scoring a folder of predictions against Occ3D-layout ground truth (used by the CLI)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from ._classes import MOVING_CLASSES, OCC3D_CLASSES
from ._io import PredictionFileError, prediction_path, read_gt_sample, read_occ3d_scenes, read_prediction
from ._rayiou import RayIoUAccumulator, rayiou_counts
from ._rays import NUSCENES_LIDAR_OFFSET, lidar_ray_directions, ray_origins
from ._voxel import VoxelIoUAccumulator, voxel_confusion


def evaluate_occ3d(gt_root: str | Path, pred_root: str | Path, *,
                   variant: Literal["semantic", "geo"] = "semantic",
                   origins: Literal["scene", "window"] = "scene", split: str = "all",
                   camera_mask: bool = True,
                   sensor_offset: tuple[float, float, float] = NUSCENES_LIDAR_OFFSET,
                   device: str | torch.device = "cpu", backend: Literal["warp", "torch"] = "warp",
                   progress: bool = True) -> dict:
    """RayIoU (+ mAVE, OccScore) and voxel mIoU of a prediction folder against Occ3D ground truth.

    Ground truth: ``<gt_root>/annotations.json`` (poses, scene order) and
    ``<gt_root>/gts/<scene>/<token>/labels.npz``. Predictions: ``<pred_root>/<token>.npz`` with
    ``semantics`` uint8 [200, 200, 16] and optional ``flow`` float32 [200, 200, 16, 2] m/s.
    mAVE is computed only when every GT file has ``flow`` and every prediction has ``flow``.

    Args:
        gt_root: Occ3D-layout ground-truth folder.
        pred_root: folder of prediction files.
        variant: RayIoU variant, "semantic" or "geo" (class-agnostic).
        origins: "scene" (SparseOcc: up to 8 keyframes of the scene) or "window" (Let Occ Flow:
            keyframes ref-3 .. ref+2).
        split: "all", "train" or "val" (scenes listed in annotations.json).
        camera_mask: score voxel mIoU only on ``mask_camera`` voxels (Occ3D's protocol).
        sensor_offset: ray origin in each keyframe's ego frame (the LiDAR position), metres.
        device: torch device of the ray casting.
        backend: ray-casting backend.
        progress: show a progress bar on stderr.

    Returns:
        ``{"rayiou": RayIoUAccumulator.compute(), "voxel": VoxelIoUAccumulator.compute(),
        "samples", "variant", "origins", "mave_available"}``.

    Raises:
        PredictionFileError: a prediction is missing or malformed (the message names the file).
        ValueError: the ground-truth folder is malformed.
    """
    device = torch.device(device)
    scenes = read_occ3d_scenes(gt_root, split)
    jobs = [(scene, i) for scene in scenes for i in range(len(scene.tokens))]
    if not jobs:
        raise ValueError(f"no samples found in {gt_root} (split={split!r})")
    missing = [str(prediction_path(pred_root, s.tokens[i])) for s, i in jobs
               if not prediction_path(pred_root, s.tokens[i]).is_file()]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise PredictionFileError(f"{len(missing)} prediction file(s) missing: "
                                  f"{', '.join(missing[:5])}{more}")
    directions = lidar_ray_directions().to(device)
    rays = RayIoUAccumulator(variant=variant)
    voxels = VoxelIoUAccumulator()
    mave_ok = True
    for scene, i in tqdm(jobs, desc="RayIoU", unit="sample", disable=not progress, dynamic_ncols=True):
        token = scene.tokens[i]
        gt = read_gt_sample(gt_root, scene.name, token)
        pred = read_prediction(pred_root, token)
        mave_ok = mave_ok and gt["flow"] is not None and pred["flow"] is not None
        o = ray_origins(scene.ego_to_global, i, mode=origins, sensor_offset=sensor_offset)
        gt_sem = gt["semantics"].to(device)
        pred_sem = pred["semantics"].to(device)
        flows = {}
        if mave_ok:
            flows = {"pred_flow": pred["flow"].to(device), "gt_flow": gt["flow"].to(device)}
        rays = rays + rayiou_counts(pred_sem, gt_sem, o.to(device), directions=directions, variant=variant,
                                    backend=backend, **flows)
        mask = gt["mask_camera"].to(device) if camera_mask else None
        voxels = voxels + voxel_confusion(pred_sem, gt_sem, mask)
    ray_result = rays.compute()
    if not mave_ok:
        ray_result["mAVE"] = math.nan
        ray_result["AVE_per_class"] = {OCC3D_CLASSES[c]: math.nan for c in MOVING_CLASSES}
        ray_result["OccScore"] = math.nan
    return {"samples": len(jobs), "variant": variant, "origins": origins, "mave_available": mave_ok,
            "camera_mask": camera_mask, "rayiou": ray_result, "voxel": voxels.compute()}


def format_table(result: dict) -> str:
    """A plain-text table of :func:`evaluate_occ3d`'s result."""
    ray, vox = result["rayiou"], result["voxel"]
    keys = [k for k in ray if k.startswith("RayIoU@")]
    head = ["class", *keys, "voxel IoU"]
    rows = []
    for name, values in ray["per_class"].items():
        rows.append([name, *[_fmt(v) for v in values], _fmt(vox["per_class"].get(name, math.nan))])
    rows.append(["MEAN", *[_fmt(ray[k]) for k in keys], _fmt(vox["mIoU"])])
    widths = [max(len(str(r[c])) for r in [head, *rows]) for c in range(len(head))]
    line = lambda r: "  ".join(str(v).ljust(w) if c == 0 else str(v).rjust(w)  # noqa: E731
                               for c, (v, w) in enumerate(zip(r, widths, strict=True)))
    sep = "-" * len(line(head))
    out = [f"{result['samples']} samples, variant={result['variant']}, origins={result['origins']}, "
           f"voxel IoU on {'camera-visible' if result['camera_mask'] else 'all'} voxels",
           sep, line(head), sep]
    out += [line(r) for r in rows[:-1]] + [sep, line(rows[-1]), sep]
    out.append(f"RayIoU {_fmt(ray['RayIoU'])}   mAVE {_fmt(ray['mAVE'])} m/s   "
               f"OccScore {_fmt(ray['OccScore'])}"
               f"   voxel mIoU {_fmt(vox['mIoU'])}   geometric IoU {_fmt(vox['IoU_geo'])}")
    if not result["mave_available"]:
        out.append("(mAVE not computed: flow missing from the ground truth or from a prediction)")
    return "\n".join(out)


def _fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
