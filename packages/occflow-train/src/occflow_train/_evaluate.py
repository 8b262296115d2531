"""Evaluation of a trained model with ``occflow_metrics``, baselines beside it, and pictures.

Per validation sample (the reader's ``gt`` must be present):

- occupancy: the predicted SDF interpolated at the centres of the ground-truth grid (Occ3D
  200 x 200 x 16 on nuScenes), occupied where ``sdf <= 0.1`` m, the 6-voxel x/y border cleared
  (the released evaluation); scored with class-agnostic RayIoU ("geo": the GT label is copied
  onto predicted hits) at 1/2/4 m from the Let Occ Flow window of origins (ref-3 .. ref+2);
- flow: the predicted flow at the same centres, per keyframe step -> m/s (x2 on nuScenes); mAVE
  on the TP rays at 2 m, and the foreground end-point error on the GT's moving voxels;
- depth: rendered depth along the current frame's LiDAR rays against the measured range,
  monodepth2's metrics;
- baselines scored the same way: "flat ground" (every voxel at or below the ego frame's z = 0
  occupied, nothing else) and "zero flow" (the model's occupancy with flow 0).

Evaluation is sharded over processes by sample index and the per-sample results are gathered
and added in index order, so N processes give exactly the single-process numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import occflow_data as od
import volrender
from occflow_metrics import (
    DepthAccumulator,
    RayIoUAccumulator,
    cast_rayiou_rays,
    depth_metrics,
    lidar_ray_directions,
    ray_origins,
    rayiou_counts_from_rays,
)
from volrender import sample_vertex_field

from ._eval_utils import STEP_SECONDS, flow_to_velocity

OCCUPIED_LABEL = 0   # any non-free label: the geo variant copies the GT label onto hits
FREE = od.FREE_LABEL


@dataclass
class SampleEval:
    """Accumulators of one validation sample (merged in index order)."""

    rayiou: RayIoUAccumulator
    rayiou_flat: RayIoUAccumulator
    rayiou_zero_flow: RayIoUAccumulator
    depth: DepthAccumulator
    fg_epe_sum: float = 0.0
    fg_zero_sum: float = 0.0
    fg_voxels: int = 0
    rayiou_blank: RayIoUAccumulator | None = None
    blank_changed: int = 0      # above-ground cells occupied in exactly one of (real, blanked)
    blank_union: int = 0        # above-ground cells occupied in either


@dataclass
class EvalResult:
    """Dataset-level metrics of the model and the baselines."""

    samples: int = 0
    rayiou: dict[str, Any] = field(default_factory=dict)
    rayiou_flat: dict[str, Any] = field(default_factory=dict)
    mave_zero_flow: float = float("nan")
    depth: dict[str, float] = field(default_factory=dict)
    fg_epe: float = float("nan")
    fg_epe_zero_flow: float = float("nan")
    image_dependence: dict[str, float] = field(default_factory=dict)

    def flat(self) -> dict[str, float]:
        """Scalar metrics by name (for logging)."""
        out = {"samples": float(self.samples)}
        for prefix, d in (("", self.rayiou), ("flat_", self.rayiou_flat)):
            for k, v in d.items():
                if isinstance(v, (int, float)):
                    out[prefix + k] = float(v)
        out["zero_flow_mave"] = self.mave_zero_flow
        out["fg_epe"] = self.fg_epe
        out["zero_flow_fg_epe"] = self.fg_epe_zero_flow
        out.update({f"depth_{k}": v for k, v in self.depth.items()})
        out.update({f"image_dependence_{k}": v for k, v in self.image_dependence.items()})
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "model": {**self.rayiou, "fg_epe": self.fg_epe},
                "flat_ground_baseline": self.rayiou_flat,
                "zero_flow_baseline": {"mave": self.mave_zero_flow, "fg_epe": self.fg_epe_zero_flow},
                "depth": self.depth, "image_dependence": self.image_dependence}

    def table(self) -> str:
        """The summary table printed at the end of a run."""
        def f(x: Any) -> str:
            return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

        r, b = self.rayiou, self.rayiou_flat
        rows = [
            ("RayIoU (geo, mean 1/2/4 m)", r.get("rayiou"), b.get("rayiou"), "flat ground"),
            ("RayIoU@1m", r.get("rayiou@1"), b.get("rayiou@1"), "flat ground"),
            ("RayIoU@2m", r.get("rayiou@2"), b.get("rayiou@2"), "flat ground"),
            ("RayIoU@4m", r.get("rayiou@4"), b.get("rayiou@4"), "flat ground"),
            ("mAVE (m/s, lower is better)", r.get("mave"), self.mave_zero_flow, "zero flow"),
            ("foreground EPE (m/s, lower is better)", self.fg_epe, self.fg_epe_zero_flow, "zero flow"),
            ("OccScore", r.get("occ_score"), None, ""),
        ]
        lines = [f"Evaluation on {self.samples} validation samples",
                 f"{'metric':40s} {'model':>8s} {'baseline':>9s}  baseline",
                 "-" * 72]
        lines += [f"{name:40s} {f(m):>8s} {f(bl):>9s}  {what}" for name, m, bl, what in rows]
        if self.image_dependence:
            d = self.image_dependence
            lines.append(f"images blanked: RayIoU {f(d.get('rayiou_blank'))}; above-ground occupancy changed "
                         f"{f(d.get('changed_fraction'))} (0 = the cameras are ignored)")
        per_class = r.get("per_class") or {}
        if per_class:
            flat_pc = b.get("per_class") or {}
            cells = [f"{name} {f(_mean(v))}/{f(_mean(flat_pc.get(name, [])))}"
                     for name, v in per_class.items() if not math.isnan(_mean(v))]
            lines.append("per class RayIoU, model/flat: " + "  ".join(cells))
        if self.depth:
            names = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
            lines.append("depth on LiDAR rays: " + "  ".join(
                f"{k} {self.depth[k]:.3f}" for k in names if k in self.depth))
        return "\n".join(lines)


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _rayiou_summary(acc: RayIoUAccumulator) -> dict[str, Any]:
    out = acc.compute()
    res = {"rayiou": out["RayIoU"], "mave": out["mAVE"], "occ_score": out["OccScore"], "rays": out["rays"],
           "per_class": out["per_class"]}
    for t in acc.thresholds:
        res[f"rayiou@{t:g}"] = out[f"RayIoU@{t:g}"]
    return res


@torch.no_grad()
def predict_grids(model, batch, gt_grid: volrender.GridSpec, step_seconds: float,
                  threshold: float = 0.1, border: int = 6) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Occupancy labels and flow of the model on ``gt_grid``'s cells.

    Returns:
        ``labels [B, X, Y, Z]`` uint8 (``OCCUPIED_LABEL`` / 17 free), ``velocity [B, X, Y, Z, 2]``
        m/s, and the :class:`SceneField`.
    """
    field_ = model(batch)
    b = field_.sdf.shape[0]
    centres = gt_grid.points("cell", device=field_.sdf.device).expand(b, *gt_grid.cells, 3)
    sdf = sample_vertex_field(field_.sdf, field_.grid, centres)[..., 0]
    occupied = (sdf <= threshold) & field_.grid.contains(centres)
    if border:
        occupied[:, :border] = False
        occupied[:, -border:] = False
        occupied[:, :, :border] = False
        occupied[:, :, -border:] = False
    labels = torch.where(occupied, OCCUPIED_LABEL, FREE).to(torch.uint8)
    velocity = flow_to_velocity(sample_vertex_field(field_.flow, field_.grid, centres), step_seconds)
    return labels, velocity, field_


def flat_ground_labels(gt_grid: volrender.GridSpec, device=None) -> torch.Tensor:
    """The flat-ground baseline: cells whose centre is at or below z = 0 (ego frame) occupied."""
    z = gt_grid.points("cell", device=device)[..., 2]
    return torch.where(z <= 1e-6, OCCUPIED_LABEL, FREE).to(torch.uint8)


@torch.no_grad()
def lidar_depth(model_field, inv_s: torch.Tensor, frame_lidar: torch.Tensor,
                origin: tuple[float, float, float], n_samples: int, chunk: int,
                cos_anneal_ratio: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rendered depth and measured range along the rays to every LiDAR point of one sample."""
    pts = frame_lidar.to(model_field.sdf.device, torch.float32)
    o = torch.tensor(origin, dtype=torch.float32, device=pts.device)
    d = pts - o
    rng = d.norm(dim=-1)
    keep = rng > 1e-3
    d, rng = d[keep] / rng[keep, None], rng[keep]
    preds = []
    for s in range(0, d.shape[0], chunk):
        dirs = d[s:s + chunk][None]
        out = volrender.render_rays(model_field.sdf[:1], None, model_field.grid,
                                    o.expand_as(dirs).contiguous(), dirs.contiguous(),
                                    n_samples=n_samples, inv_s=inv_s, cos_anneal_ratio=cos_anneal_ratio)
        preds.append(out.depth[0])
    pred = torch.cat(preds) if preds else rng.new_zeros(0)
    return pred, rng


def score_rays(labels: torch.Tensor, velocity: torch.Tensor, gt_labels: torch.Tensor,
               gt_flow: torch.Tensor | None, origins: torch.Tensor, grid: volrender.GridSpec,
               others: tuple[torch.Tensor, ...] = ()) -> tuple[RayIoUAccumulator, ...]:
    """Geo RayIoU counts of the model, of the model with zero flow, of the flat-ground baseline and
    of every grid in ``others`` (occupancy only).

    The 14,040 rays per origin are cast once through the GT, the predicted, the flat-ground and
    the ``others`` grids together (``cast_rayiou_rays`` with G = 3 + len(others)); the zero-flow
    baseline reuses the model's casts, so all are scored on exactly the same rays.

    Args:
        labels: ``[X, Y, Z]`` predicted labels (17 = free); velocity: ``[X, Y, Z, 2]`` m/s.
        gt_labels: ``[X, Y, Z]`` GT labels; gt_flow: ``[X, Y, Z, 2]`` m/s or None.
        origins: ``[T, 3]`` ray origins in the ego frame, metres.
        grid: the GT grid (cubic voxels).
        others: more ``[X, Y, Z]`` label grids to score (e.g. the prediction with blanked images).

    Returns:
        ``(model, zero_flow, flat_ground, *others)`` accumulators.
    """
    dirs = lidar_ray_directions().to(torch.float32)
    t, r = origins.shape[0], dirs.shape[0]
    o = origins[:, None].expand(t, r, 3).reshape(-1, 3)
    d = dirs[None].expand(t, r, 3).reshape(-1, 3)
    stack = torch.stack([gt_labels.to(torch.uint8), labels, flat_ground_labels(grid),
                         *(o.to(torch.uint8) for o in others)])
    cast = cast_rayiou_rays(stack, o, d, voxel_size=grid.voxel_size[0], lower=grid.lower)
    g, p, f = 0, 1, 2

    def flow_at(volume: torch.Tensor | None, k: int) -> torch.Tensor | None:
        if volume is None:
            return None
        i = cast.index[k]
        return volume[i[:, 0], i[:, 1], i[:, 2]].float()

    gt_ray_flow = flow_at(gt_flow, g)
    pred_ray_flow = flow_at(velocity, p) if gt_flow is not None else None
    kw = dict(gt_label=cast.label[g], gt_distance=cast.distance[g], gt_flow=gt_ray_flow, variant="geo")
    acc = rayiou_counts_from_rays(cast.label[p], cast.distance[p], pred_flow=pred_ray_flow, **kw)
    zero_flow = None if pred_ray_flow is None else torch.zeros_like(pred_ray_flow)
    zero = rayiou_counts_from_rays(cast.label[p], cast.distance[p], pred_flow=zero_flow, **kw)
    no_flow = {**kw, "gt_flow": None}
    flat = rayiou_counts_from_rays(cast.label[f], cast.distance[f], **no_flow)
    rest = tuple(rayiou_counts_from_rays(cast.label[k], cast.distance[k], **no_flow)
                 for k in range(3, 3 + len(others)))
    return (acc, zero, flat, *rest)


#: Cells whose centre is above this height (ego frame, metres) count for the image dependence:
#: the ground layer is occupied whatever the cameras show.
ABOVE_GROUND = 0.2


def blank_images(batch: od.Batch, value: float = 0.5) -> od.Batch:
    """``batch`` with every camera image of the current and history frames set to ``value``
    (the same poses, intrinsics and LiDAR): what the model predicts without seeing anything."""
    def blank(frame):
        return replace(frame, images=torch.full_like(frame.images, value))

    return replace(batch, current=blank(batch.current), history=[blank(h) for h in batch.history])


def evaluate_sample(model, dataset, index: int, config, device) -> SampleEval | None:
    """All accumulators of one validation sample, or None when it has no ground truth."""
    sample = dataset[index]
    if sample.gt is None:
        return None
    batch = od.collate_samples([sample]).to(device)
    gt = sample.gt
    step = STEP_SECONDS.get(config.data.dataset, 0.5)
    labels, velocity, field_ = predict_grids(model, batch, gt.grid, step)
    labels, velocity = labels[0].cpu(), velocity[0].cpu()
    blanked = ()
    if config.eval.image_dependence:
        blanked = (predict_grids(model, blank_images(batch), gt.grid, step)[0][0].cpu(),)
    poses, ref = dataset.keyframe_poses(index)
    origins = ray_origins(torch.as_tensor(poses), ref, mode=config.eval.rayiou_origins).float()
    gt_labels = gt.occupancy.cpu()
    gt_flow = gt.flow.cpu() if gt.flow is not None else None
    acc, acc_zero, acc_flat, *acc_blank = score_rays(labels, velocity, gt_labels, gt_flow, origins, gt.grid,
                                                     others=blanked)
    result = SampleEval(acc, acc_flat, acc_zero, DepthAccumulator())
    if blanked:
        above = gt.grid.points("cell")[..., 2] > ABOVE_GROUND
        real, blank = (labels != FREE) & above, (blanked[0] != FREE) & above
        result.rayiou_blank = acc_blank[0]
        result.blank_changed, result.blank_union = int((real ^ blank).sum()), int((real | blank).sum())
    if gt_flow is not None:
        moving = (gt_flow.norm(dim=-1) > 0) & (gt_labels != FREE)
        if moving.any():
            err = (velocity[moving] - gt_flow[moving]).norm(dim=-1).double()
            result.fg_epe_sum = float(err.sum())
            result.fg_zero_sum = float(gt_flow[moving].norm(dim=-1).double().sum())
            result.fg_voxels = int(moving.sum())
    if sample.current.lidar is not None and sample.current.lidar.shape[0]:
        pred, rng = lidar_depth(field_, model.inv_s().detach(), sample.current.lidar,
                                config.render.lidar_origin, config.render.n_samples, config.eval.render_chunk,
                                config.final_cos_anneal_ratio())
        lo, hi = config.eval.depth_range
        result.depth = depth_metrics(pred.cpu(), rng.cpu(), min_depth=lo, max_depth=hi)
    return result


def merge_sample_evals(evals: list[SampleEval]) -> EvalResult:
    """Add per-sample accumulators (in the given order) into dataset metrics."""
    if not evals:
        return EvalResult()
    acc, flat, zero, depth = evals[0].rayiou, evals[0].rayiou_flat, evals[0].rayiou_zero_flow, evals[0].depth
    fg, fg0, n = evals[0].fg_epe_sum, evals[0].fg_zero_sum, evals[0].fg_voxels
    blank, changed, union = evals[0].rayiou_blank, evals[0].blank_changed, evals[0].blank_union
    for e in evals[1:]:
        acc, flat, zero, depth = acc.merge(e.rayiou), flat.merge(e.rayiou_flat), \
            zero.merge(e.rayiou_zero_flow), depth.merge(e.depth)
        fg, fg0, n = fg + e.fg_epe_sum, fg0 + e.fg_zero_sum, n + e.fg_voxels
        if blank is not None and e.rayiou_blank is not None:
            blank = blank.merge(e.rayiou_blank)
        changed, union = changed + e.blank_changed, union + e.blank_union
    image_dependence = {}
    if blank is not None:
        # an empty union (nothing above the ground in either) means nothing changed
        image_dependence = {"rayiou_blank": _rayiou_summary(blank)["rayiou"],
                            "changed_fraction": changed / union if union else 0.0}
    zero_summary = _rayiou_summary(zero)
    return EvalResult(samples=len(evals), rayiou=_rayiou_summary(acc), rayiou_flat=_rayiou_summary(flat),
                      mave_zero_flow=zero_summary.get("mave") or float("nan"),
                      depth=depth.compute() if int(depth.images) else {},
                      fg_epe=fg / n if n else float("nan"), fg_epe_zero_flow=fg0 / n if n else float("nan"),
                      image_dependence=image_dependence)


def validation_set(config):
    """The validation reader of ``config`` (ground truth on, no supervision frames, no cues).

    Resolves the data root without generating or re-checking cues (evaluation reads none);
    :func:`occflow_train.train` opens its reader once and passes it in instead.
    """
    from ._train import open_dataset, resolve_data

    data_cfg, seq = resolve_data(replace(config.data, make_cues=False), progress=False)
    return open_dataset(data_cfg, seq, data_cfg.val_split, train=False)


def evaluate_model(accelerator, model, config, *, progress: bool = True, dataset=None) -> EvalResult:
    """Evaluate ``model`` on the validation split, sharded over ``accelerator``'s processes.

    Every process evaluates samples ``rank, rank + world, ...``; the per-sample results are
    gathered to every process and merged in index order.
    """
    from tqdm.auto import tqdm

    dataset = dataset if dataset is not None else validation_set(config)
    n = len(dataset)
    if config.data.max_val_samples:
        n = min(n, config.data.max_val_samples)
    was_training = model.training
    model.eval()
    mine = list(range(accelerator.process_index, n, accelerator.num_processes))
    local: list[tuple[int, SampleEval]] = []
    for i in tqdm(mine, desc="evaluate", disable=not (progress and accelerator.is_main_process),
                  dynamic_ncols=True):
        e = evaluate_sample(model, dataset, i, config, accelerator.device)
        if e is not None:
            local.append((i, e))
    model.train(was_training)
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        gathered = gather_object([local])
        local = [item for part in gathered for item in part]
    local.sort(key=lambda item: item[0])
    return merge_sample_evals([e for _, e in local])


# ----------------------------------------------------------------------------------- pictures
@torch.no_grad()
def write_pictures(model, config, folder: Path, *, count: int = 2, dataset=None) -> list[Path]:
    """One PNG per validation frame (the first ``count``): cameras, rendered depth and flow, BEV of
    predicted vs GT occupancy coloured by height with flow arrows on moving objects, and depth
    rendered from a novel viewpoint (the front camera moved 1.5 m left and turned 15 degrees)."""
    from ._rays import pixel_rays
    from ._viz import bev_height, save_frame_figure

    dataset = dataset if dataset is not None else validation_set(config)
    device = next(model.parameters()).device
    model.eval()
    paths = []
    for i in range(min(count, len(dataset))):
        sample = dataset[i]
        batch = od.collate_samples([sample]).to(device)
        gt_grid = sample.gt.grid if sample.gt is not None else volrender.OCC3D_NUSCENES
        labels, velocity, field_ = predict_grids(model, batch, gt_grid,
                                                 STEP_SECONDS.get(config.data.dataset, 0.5))
        inv_s = model.inv_s().detach()
        ratio = config.final_cos_anneal_ratio()
        frame = sample.current
        images = frame.loss_images if frame.loss_images is not None else frame.images
        k = frame.loss_intrinsics if frame.loss_intrinsics is not None else frame.intrinsics
        h, w = images.shape[-2:]
        depths, flows = [], []
        vs, us = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        pix = torch.stack([us, vs], dim=-1)[None, None].to(device)        # [1, 1, h, w, 2] pixel centres
        for cam in range(images.shape[0]):
            o, d = pixel_rays(pix, k[cam:cam + 1][None].to(device),
                              frame.cam_to_ego[cam:cam + 1][None].to(device))
            out = volrender.render_rays(field_.sdf, field_.flow, field_.grid, o.reshape(1, -1, 3),
                                        d.reshape(1, -1, 3), n_samples=config.render.n_samples, inv_s=inv_s,
                                        cos_anneal_ratio=ratio)
            depths.append(out.depth.reshape(h, w).cpu())
            flows.append(out.features.reshape(h, w, 2).permute(2, 0, 1).cpu())
        # novel view: front camera shifted 1.5 m to the left (ego +y) and turned 15 degrees left
        yaw = math.radians(15.0)
        turn = torch.tensor([[math.cos(yaw), -math.sin(yaw), 0, 0], [math.sin(yaw), math.cos(yaw), 0, 1.5],
                             [0, 0, 1, 0], [0, 0, 0, 1]], dtype=frame.cam_to_ego.dtype)
        moved = (turn @ frame.cam_to_ego[0])[None, None].to(device)
        o, d = pixel_rays(pix, k[:1][None].to(device), moved.to(k.dtype))
        nov = volrender.render_rays(field_.sdf, None, field_.grid, o.reshape(1, -1, 3), d.reshape(1, -1, 3),
                                    n_samples=config.render.n_samples, inv_s=inv_s,
                                    cos_anneal_ratio=ratio).depth.reshape(h, w).cpu()
        z = gt_grid.points("cell")[0, 0, :, 2]
        pred_occ = labels[0].cpu() != FREE
        bev_gt = bev_height(sample.gt.occupancy != FREE, z) if sample.gt is not None else None
        arrows = None
        if sample.gt is not None and sample.gt.flow is not None:
            moving = (sample.gt.flow.norm(dim=-1) > 0).any(dim=2)          # [X, Y]
            xs, ys = torch.nonzero(moving, as_tuple=True)
            sel = torch.arange(0, xs.numel(), 6)
            xs, ys = xs[sel], ys[sel]
            v = velocity[0].cpu()[xs, ys].mean(dim=1)                        # mean over z, m/s
            nx, ny = gt_grid.cells[:2]
            pos = np.stack([(ny - 1 - ys).numpy(), (nx - 1 - xs).numpy()], axis=1).astype(float)
            vec = np.stack([-v[:, 1].numpy(), v[:, 0].numpy()], axis=1) / np.array(gt_grid.voxel_size[:2])
            arrows = (pos, vec)
        paths.append(save_frame_figure(folder / f"frame_{i:03d}.png", images=images,
                                       depth=torch.stack(depths), flow=torch.stack(flows),
                                       bev_pred=bev_height(pred_occ, z), bev_gt=bev_gt, arrows=arrows,
                                       novel_depth=nov, title=f"{config.data.dataset} val sample {i}"))
    return paths
