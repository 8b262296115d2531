"""``compute_losses``: sample rays, render the field through ``volrender`` and form eq. 12."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import volrender
from occflow_data import Batch, FrameBatch, Sample, collate_samples, relative_pose

from .._config import LossConfig, RenderConfig
from .._field import SceneField
from .._rays import (
    CameraRays,
    gather_pixels,
    pixel_rays,
    project_points,
    sample_camera_rays,
    sample_lidar_rays,
    sample_mask_pixels,
)
from . import terms


@dataclass
class _Target:
    """An adjacent frame the current rays are reprojected into (per camera)."""

    name: str
    frame: FrameBatch
    world_to_cam: torch.Tensor      # [B, N, 4, 4] current ego frame -> target camera
    intrinsics: torch.Tensor        # [B, N, 3, 3]


def _as_batch(batch: Sample | Batch) -> Batch:
    if isinstance(batch, Sample):
        return collate_samples([batch])
    if not isinstance(batch, Batch):
        raise TypeError(f"batch must be an occflow_data.Batch or Sample, got {type(batch).__name__}")
    return batch


def _target(name: str, current: FrameBatch, frame: FrameBatch, dtype: torch.dtype) -> _Target:
    if frame.loss_images is None:
        raise ValueError(f"batch.{name}.loss_images is None: the losses need loss images of every "
                         "supervision frame")
    ego_to_ego = relative_pose(current.ego_to_global, frame.ego_to_global).to(dtype)       # [B, 4, 4]
    cam_to_ego = frame.cam_to_ego.to(dtype)
    world_to_cam = torch.linalg.inv(cam_to_ego) @ ego_to_ego[:, None].to(cam_to_ego.device)
    return _Target(name, frame, world_to_cam, frame.loss_intrinsics.to(dtype))


def _displace(points: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``points [B, R, S, 3] + (flow [B, R, S, 2], 0)`` on the rays where ``mask [B, R]``."""
    if mask is not None:
        flow = torch.where(mask[..., None, None], flow, torch.zeros_like(flow))
    return points + torch.cat([flow, torch.zeros_like(flow[..., :1])], dim=-1)


def _per_camera(x: torch.Tensor, b: int, n: int) -> torch.Tensor:
    """``[B, N * h * w, ...]`` -> ``[B, N, h * w, ...]``."""
    return x.reshape(b, n, x.shape[1] // n, *x.shape[2:])


@dataclass
class _Motion:
    """What the flow terms need of a set of R rendered rays (S samples each)."""

    pixels: torch.Tensor          # [B, R, 2] ray pixel (u, v) in the current loss image
    cue: torch.Tensor             # [B, R, 2] optical-flow cue to the next frame, pixels
    cue_ok: torch.Tensor          # [B, R] bool: usable cue
    dynamic: torch.Tensor         # [B, R] bool: eq. 10
    weights: torch.Tensor         # [B, R, S] render weights
    features: torch.Tensor        # [B, R, 2] rendered flow
    sample_flow: torch.Tensor     # [B, R, S, 2] flow at the samples
    sample_pixels: torch.Tensor   # [B, R, S, 2] samples (displaced on dynamic rays) seen in the next frame
    front: torch.Tensor           # [B, R, S] bool: the sample is in front of the next camera

    @staticmethod
    def cat(a: _Motion, b: _Motion) -> _Motion:
        return _Motion(*(torch.cat([getattr(a, f), getattr(b, f)], dim=1) for f in a.__dataclass_fields__))


def _motion(field: SceneField, cur: FrameBatch, nxt: _Target, pixels_img: torch.Tensor, origins: torch.Tensor,
            directions: torch.Tensor, out, config: LossConfig, usable: torch.Tensor | None = None) -> _Motion:
    """Cue, dynamic mask (eq. 10) and next-frame projections of rendered rays.

    ``pixels_img [B, N, h, w, 2]`` are the rays' pixels per camera, ``origins``/``directions``
    ``[B, N * h * w, 3]``, ``out`` their ``render_rays`` result with samples and flow features;
    ``usable [B, N * h * w]`` (optional) removes rays from the flow terms.
    """
    b, n, h, w = pixels_img.shape[:4]
    r = n * h * w
    dtype = field.sdf.dtype
    pixels = pixels_img.reshape(b, r, 2).to(dtype)
    cue = gather_pixels(cur.cues["flow"].to(pixels.device), pixels_img).reshape(b, r, 2).to(dtype)
    flow_valid = gather_pixels(cur.cues["flow_valid"].to(pixels.device), pixels_img).reshape(b, r)
    movable = gather_pixels(cur.cues["movable"].to(pixels.device), pixels_img).reshape(b, r)
    if usable is not None:
        flow_valid = flow_valid & usable
    cue_ok = terms.flow_target_valid(cue, flow_valid, median_factor=config.flow_median_factor,
                                     max_pixels=config.flow_max_pixels)
    with torch.no_grad():
        surface = origins + out.depth.detach()[..., None] * directions
        uv, front = project_points(_per_camera(surface, b, n), nxt.intrinsics, nxt.world_to_cam)
        static_flow = uv.reshape(b, r, 2) - pixels
    dynamic = terms.dynamic_mask(cue, static_flow, movable, cue_ok & front.reshape(b, r),
                                 config.dynamic_threshold)
    sample_flow = terms.sample_vertex_field(field.flow, field.grid, out.points)      # [B, R, S, 2]
    moved = _displace(out.points, sample_flow, dynamic)
    uv, front = project_points(_per_camera(moved, b, n), nxt.intrinsics, nxt.world_to_cam)
    return _Motion(pixels, cue, cue_ok, dynamic, out.weights, out.features, sample_flow,
                   uv.reshape(b, r, -1, 2), front.reshape(b, r, -1))


def _movable_rays(field: SceneField, cur: FrameBatch, nxt: _Target, render: RenderConfig, config: LossConfig,
                  inv_s: float | torch.Tensor, generator: torch.Generator | None,
                  cos_anneal_ratio: float | None) -> _Motion | None:
    """``render.flow_rays`` extra rays per camera drawn inside the movable mask (with a valid cue).

    Moving objects cover a few percent of an image, so the regular ray lattice puts only a
    handful of rays on them; these rays feed the flow terms only (not the photometric and
    geometry terms, whose SSIM and smoothness need the lattice). None when no camera of the
    batch has a movable pixel with a valid cue.
    """
    device, dtype = field.sdf.device, field.sdf.dtype
    mask = cur.cues["movable"].to(device) & cur.cues["flow_valid"].to(device)
    if not bool(mask.any()):
        return None
    pixels_img, valid = sample_mask_pixels(mask, render.flow_rays, generator=generator)
    origins, directions = pixel_rays(pixels_img, cur.loss_intrinsics.to(device, dtype),
                                     cur.cam_to_ego.to(device, dtype))
    b = origins.shape[0]
    origins, directions = origins.reshape(b, -1, 3), directions.reshape(b, -1, 3)
    out = volrender.render_rays(field.sdf, field.flow, field.grid, origins, directions,
                                n_samples=render.n_samples, inv_s=inv_s, near=render.near,
                                stratified=render.stratified, generator=generator, return_samples=True,
                                backend=render.backend, cos_anneal_ratio=cos_anneal_ratio)
    return _motion(field, cur, nxt, pixels_img, origins, directions, out, config, valid.reshape(b, -1))


def _reprojection(field: SceneField, rays: CameraRays, source: torch.Tensor, targets: list[_Target],
                  dynamic: torch.Tensor, stage: int, config: LossConfig, render: RenderConfig,
                  inv_s: float | torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Eq. 8 through ``volrender.render_reprojection``, cameras folded into the batch.

    Stage 1: every target warped rigidly. Stage 2: the next frame twice, with the predicted flow
    (used on dynamic rays) and rigidly (static rays); the other targets rigidly, on static rays.
    A target counts for a ray only where at least half of the ray's weight lands in its image.
    """
    b, n, h, w = rays.shape
    device, dtype = field.sdf.device, field.sdf.dtype
    use_flow = stage == 2
    entries = []                          # (target, flow_scale, for_dynamic_rays)
    for t in targets:
        if use_flow and t.name == "next":
            entries.append((t, 1.0, True))
        entries.append((t, 0.0, False))
    k = len(entries)

    def fold(x: torch.Tensor) -> torch.Tensor:      # [B, ...] -> [B * N, ...] (same field per camera)
        return x[:, None].expand(b, n, *x.shape[1:]).reshape(b * n, *x.shape[1:])

    images = torch.stack([t.frame.loss_images.to(device=device, dtype=dtype) for t, _, _ in entries], dim=2)
    intr = torch.stack([t.intrinsics for t, _, _ in entries], dim=2)
    poses = torch.stack([t.world_to_cam for t, _, _ in entries], dim=2)
    origins = rays.origins.to(device=device, dtype=dtype).reshape(b * n, h * w, 3)
    directions = rays.directions.to(device=device, dtype=dtype).reshape(b * n, h * w, 3)
    out = volrender.render_reprojection(
        fold(field.sdf), fold(field.flow) if use_flow else None, field.grid, origins, directions,
        source.reshape(b * n, h * w, 3).to(dtype), images.reshape(b * n, k, *images.shape[3:]),
        intr.reshape(b * n, k, 3, 3), poses.reshape(b * n, k, 4, 4), n_samples=render.n_samples, inv_s=inv_s,
        flow_scale=[e[1] for e in entries] if use_flow else None, near=render.near,
        stratified=render.stratified, generator=generator, backend=render.backend)
    warped, errors = out.colors, out.errors
    if config.normalize_reprojection:
        warped, errors = terms.normalize_by_opacity(warped, errors, out.opacity)
    warped = warped.reshape(b, n, h, w, k, 3)
    errors = errors.reshape(b, n, h, w, k)
    seen = out.coverage.detach() > 0.5 * out.opacity.detach()[..., None] + 1e-6
    dyn = dynamic.reshape(b, n, h, w, 1)
    for_dynamic = torch.tensor([e[2] for e in entries], device=device)
    valid = seen.reshape(b, n, h, w, k) & torch.where(dyn, for_dynamic, ~for_dynamic) if use_flow \
        else seen.reshape(b, n, h, w, k)
    identity = torch.stack([gather_pixels(t.frame.loss_images.to(device), rays.pixels.to(device))
                            for t, _, _ in entries], dim=-2).to(dtype)
    return terms.reprojection_loss(warped, source.to(dtype), identity, weighted_l1=errors, valid=valid,
                                   ssim_weight=config.ssim_weight, automask=config.automask)


def compute_losses(field: SceneField, batch: Sample | Batch, stage: int, config: LossConfig | None = None,
                   render: RenderConfig | None = None, *, inv_s: float | torch.Tensor,
                   generator: torch.Generator | None = None, cos_anneal_ratio: float | None = None,
                   rays: CameraRays | None = None) -> dict[str, torch.Tensor]:
    """All loss terms of one training step (eq. 12) and their weighted total.

    Camera rays are drawn as a regular ray image per camera of the current frame
    (:func:`sample_camera_rays`) and rendered through ``volrender.render_rays``. Supervision
    frames: ``batch.next`` (t + 1) and ``batch.aux_prev`` (the auxiliary earlier frame).

    Stage 1 (static world): reprojection into the adjacent frames without flow, eikonal,
    Hessian, LiDAR SILog (when the batch has LiDAR), edge-aware depth smoothness and the two
    sparsity terms. Stage 2 adds: the dynamic mask (eq. 10) from the ``flow`` cue, the rigid flow
    of the rendered depth and the ``movable`` cue; the optical-flow loss (eq. 9, 11: static rays
    supervise geometry, dynamic rays the flow with detached weights); static flow supervision
    toward ``aux_prev`` from the cue named ``config.aux_flow_cue`` (skipped when absent);
    ``L_dreg``; edge-aware flow smoothness. In stage 2 the next frame is warped with the
    predicted flow on dynamic rays and the earlier frame is used on static rays only. With
    ``render.flow_rays > 0`` the flow terms (flow loss and ``L_dreg``) also use that many extra
    rays per camera drawn inside the movable mask.

    Args:
        field: the predicted :class:`SceneField` (B scenes).
        batch: an ``occflow_data.Batch`` (or one ``Sample``) whose current frame has
            ``loss_images``/``loss_intrinsics``; stage 2 needs the ``flow``, ``flow_valid`` and
            ``movable`` cues of the current frame and ``batch.next``.
        stage: 1 or 2.
        config: loss weights and settings (:class:`LossConfig` defaults: the paper's).
        render: ray sampling and rendering settings (:class:`RenderConfig`).
        inv_s: NeuS sharpness (a float or a one-element tensor that gets a gradient).
        generator: CPU generator for ray lattices, jitter, LiDAR draws and the sparsity shift.
        cos_anneal_ratio: forwarded to ``volrender.render_rays`` (None = eq. 13 as written).
        rays: camera rays to use instead of drawing them (e.g. a fixed lattice).

    Returns:
        ``{"total": weighted sum, <term>: unweighted value, ...}`` for every term that was
        computed (weight > 0 and its inputs present), plus diagnostics without gradient:
        ``"gamma"`` (eq. 11) and ``"dynamic_fraction"`` (stage 2).
    """
    config = LossConfig() if config is None else config
    render = RenderConfig() if render is None else render
    if not isinstance(field, SceneField):
        raise TypeError(f"field must be a SceneField, got {type(field).__name__}")
    if not isinstance(config, LossConfig) or not isinstance(render, RenderConfig):
        raise TypeError("config must be a LossConfig and render a RenderConfig")
    weights = config.weights(stage)
    batch = _as_batch(batch)
    cur = batch.current
    if cur.loss_images is None:
        raise ValueError("batch.current.loss_images is None: the losses need loss images and intrinsics")
    b, n = cur.loss_images.shape[:2]
    if b != field.batch_size:
        raise ValueError(f"field has batch size {field.batch_size} but the batch has {b} samples")
    device, dtype = field.sdf.device, field.sdf.dtype
    grid = field.grid
    img_hw = tuple(cur.loss_images.shape[-2:])
    if stage == 2:
        missing = [k for k in ("flow", "flow_valid", "movable") if k not in cur.cues]
        if missing or batch.next is None:
            raise ValueError(f"stage 2 needs batch.next and the current frame's cues flow, flow_valid, "
                             f"movable; missing: {missing + ([] if batch.next is not None else ['next'])}")

    # ------------------------------------------------------------------ camera rays
    if rays is None:
        rays = sample_camera_rays(cur.loss_intrinsics.to(dtype), cur.cam_to_ego.to(dtype), img_hw,
                                  render.rays_per_camera, random=render.random_rays, generator=generator)
    h, w = rays.shape[2:]
    r = n * h * w
    origins, directions = rays.flat()
    out = volrender.render_rays(field.sdf, field.flow if stage == 2 else None, grid, origins.to(device),
                                directions.to(device), n_samples=render.n_samples, inv_s=inv_s,
                                near=render.near, stratified=render.stratified, generator=generator,
                                return_samples=True, backend=render.backend,
                                cos_anneal_ratio=cos_anneal_ratio)
    pixels_img = rays.pixels.to(device)                                  # [B, N, h, w, 2] long
    pixels = pixels_img.reshape(b, r, 2).to(dtype)
    source = gather_pixels(cur.loss_images.to(device), pixels_img)       # [B, N, h, w, 3]
    depth = out.depth                                                    # [B, R]

    targets = []
    if batch.next is not None:
        targets.append(_target("next", cur, batch.next.to(device), dtype))
    if batch.aux_prev is not None:
        targets.append(_target("aux_prev", cur, batch.aux_prev.to(device), dtype))

    losses: dict[str, torch.Tensor] = {}
    need = {k for k, v in weights.items() if v > 0}

    # ------------------------------------------------------------------ dynamic disentanglement
    dynamic = torch.zeros(b, r, dtype=torch.bool, device=device)
    motion = None
    if stage == 2:
        motion = _motion(field, cur, targets[0], pixels_img, origins.to(device), directions.to(device), out,
                         config)
        dynamic = motion.dynamic
        losses["dynamic_fraction"] = dynamic.float().mean().detach()
        if render.flow_rays > 0:      # extra rays on movable objects (flow terms only)
            extra = _movable_rays(field, cur, targets[0], render, config, inv_s, generator, cos_anneal_ratio)
            if extra is not None:
                motion = _Motion.cat(motion, extra)

    # ------------------------------------------------------------------ reprojection (eq. 8)
    if "reprojection" in need and targets:
        losses["reprojection"] = _reprojection(field, rays, source, targets, dynamic, stage, config, render,
                                               inv_s, generator)

    # ------------------------------------------------------------------ flow terms (stage 2)
    if stage == 2 and "flow" in need:
        losses["flow"], gamma = terms.flow_loss(motion.sample_pixels, motion.weights, motion.pixels,
                                                motion.cue, motion.cue_ok, motion.dynamic,
                                                sample_valid=motion.front, gamma_cap=config.gamma_cap)
        losses["gamma"] = gamma.detach()
    if stage == 2 and "flow_aux" in need and config.aux_flow_cue in cur.cues:
        aux = next((t for t in targets if t.name == "aux_prev"), None)
        if aux is None:
            raise ValueError(f"the current frame has the {config.aux_flow_cue!r} cue but batch.aux_prev "
                             "is None")
        cue_aux = gather_pixels(cur.cues[config.aux_flow_cue].to(device), pixels_img)
        cue_aux = cue_aux.reshape(b, r, 2).to(dtype)
        aux_ok = terms.flow_target_valid(cue_aux, torch.isfinite(cue_aux).all(dim=-1),
                                         median_factor=config.flow_median_factor,
                                         max_pixels=config.flow_max_pixels)
        uv, front = project_points(_per_camera(out.points, b, n), aux.intrinsics, aux.world_to_cam)
        losses["flow_aux"], _ = terms.flow_loss(uv.reshape(b, r, -1, 2), out.weights, pixels, cue_aux,
                                                aux_ok & ~dynamic, torch.zeros_like(dynamic),
                                                sample_valid=front.reshape(b, r, -1),
                                                gamma_cap=config.gamma_cap)
    if stage == 2 and "static_flow" in need:
        losses["static_flow"] = terms.static_flow_regularization(
            motion.features, ~motion.dynamic, motion.sample_flow, motion.weights,
            low_weight=config.dreg_low_weight, sample_weight=config.dreg_sample_weight)
    if stage == 2 and "flow_smoothness" in need:
        flow_img = out.features.reshape(b * n, h, w, 2).permute(0, 3, 1, 2)
        losses["flow_smoothness"] = terms.edge_aware_smoothness(
            flow_img, source.reshape(b * n, h, w, 3).permute(0, 3, 1, 2))

    # ------------------------------------------------------------------ geometry terms
    if "depth_smoothness" in need:
        inv_depth = 1.0 / depth.clamp(min=1e-3)
        losses["depth_smoothness"] = terms.edge_aware_smoothness(
            inv_depth.reshape(b * n, 1, h, w), source.reshape(b * n, h, w, 3).permute(0, 3, 1, 2),
            normalize=True)
    if "sparsity_behind" in need:
        sample_sdf = terms.sample_vertex_field(field.sdf, grid, out.points)[..., 0]
        losses["sparsity_behind"] = terms.sparsity_behind_surface(sample_sdf, out.t, depth,
                                                                  margin=config.sparsity_margin)
    if "sparsity_grid" in need:
        losses["sparsity_grid"] = terms.sparsity_grid(field.sdf, grid, generator=generator,
                                                      stride=render.sparsity_stride)
    if "eikonal" in need:
        samples = out.points.reshape(b, -1, 3)
        losses["eikonal"] = (volrender.eikonal_loss(field.sdf, grid, samples.to(dtype))
                             + volrender.eikonal_loss(field.sdf, grid))
    if "hessian" in need:
        losses["hessian"] = volrender.hessian_loss(field.sdf, grid, in_voxel_units=True)
    want_lidar = "lidar" in need and render.lidar_rays > 0
    want_free = "lidar_free_space" in need and render.lidar_free_rays > 0
    if cur.lidar is not None and (want_lidar or want_free):
        pts = cur.lidar.to(device=device, dtype=dtype)
        real = (cur.lidar_mask.to(device) if cur.lidar_mask is not None
                else torch.ones(pts.shape[:2], dtype=torch.bool, device=device))
        inside = grid.contains(pts)
        origin = torch.tensor(render.lidar_origin, dtype=dtype, device=device).expand(b, 3)

        def render_lidar(n_rays: int, mask: torch.Tensor, near: float | None = None, range_power=0.0):
            rays_ = sample_lidar_rays(pts, n_rays, mask=mask, origin=origin, min_range=config.lidar_min_range,
                                      range_power=range_power, generator=generator)
            return rays_, volrender.render_rays(field.sdf, None, grid, rays_.origins, rays_.directions,
                                                n_samples=render.n_samples, inv_s=inv_s, near=near,
                                                stratified=render.stratified, generator=generator,
                                                backend=render.backend, cos_anneal_ratio=cos_anneal_ratio)

        if want_lidar:
            lrays, lout = render_lidar(render.lidar_rays, real & inside, range_power=render.lidar_range_power)
            losses["lidar"] = terms.silog_loss(lout.depth, lrays.ranges, lrays.valid,
                                               variance_focus=config.silog_variance_focus)
        if want_free:
            frays, fout = render_lidar(render.lidar_free_rays, real & ~inside, near=render.lidar_free_near)
            losses["lidar_free_space"] = terms.free_space_loss(fout.opacity, frays.valid)

    total = torch.zeros((), dtype=dtype, device=device)
    for name, weight in weights.items():
        if name in losses and weight > 0:
            total = total + weight * losses[name]
    losses["total"] = total
    return losses
