"""The self-supervised loss terms of Let Occ Flow (sections 3.3-3.4, appendix B.5-B.6) as pure functions.

Each function takes rendered quantities (depths, per-sample weights and projections, warped
colours) and returns a scalar or a mask; :func:`occflow_train.compute_losses` renders them through
``volrender`` and combines them (eq. 12). Rays are grouped per camera into small regular ray
images ``[B, N, h, w]`` so SSIM and smoothness can be computed on them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from volrender import GridSpec, sample_vertex_field


def _tensor(name: str, value, ndim: int | None = None, *, floating: bool = True) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {value.dtype}")
    return value


def _same_shape(name: str, value: torch.Tensor, shape, what: str) -> None:
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {what} = {list(shape)}, got {list(value.shape)}")


def _bool(name: str, value, shape, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got {getattr(value, 'dtype', type(value))}")
    _same_shape(name, value, shape, what)
    return value


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask``; 0 (connected to the graph) when the mask is empty."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1.0)


# ----------------------------------------------------------------------------- photometric
def dssim(x: torch.Tensor, y: torch.Tensor, *, c1: float = 0.01 ** 2, c2: float = 0.03 ** 2) -> torch.Tensor:
    """Structural dissimilarity ``(1 - SSIM) / 2`` over 3 x 3 windows (monodepth2's form).

    Means and variances use 3 x 3 average pooling with reflection padding, so the output has the
    input's size.

    Args:
        x, y: ``[M, C, h, w]`` images (h, w >= 2), intensities in [0, 1].
        c1, c2: SSIM stabilising constants for a dynamic range of 1.

    Returns:
        ``[M, C, h, w]`` values in [0, 1]; 0 where the images agree.
    """
    _tensor("x", x, 4)
    _tensor("y", y, 4)
    _same_shape("y", y, x.shape, "like x")
    if min(x.shape[-2:]) < 2:
        raise ValueError(f"x must be at least 2 x 2 pixels for a 3 x 3 SSIM window, got {tuple(x.shape)}")
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2)
    return torch.clamp((1 - num / den) / 2, 0, 1)


def photometric_error(warped: torch.Tensor, target: torch.Tensor, l1: torch.Tensor | None = None, *,
                      ssim_weight: float = 0.85) -> torch.Tensor:
    """Per-pixel photometric error ``a * DSSIM + (1 - a) * L1`` (monodepth2, ``a = 0.85``).

    Args:
        warped: ``[M, 3, h, w]`` colours fetched from an adjacent frame (a ray image).
        target: ``[M, 3, h, w]`` colours of the current frame at the same pixels.
        l1: ``[M, h, w]`` L1 term to use instead of ``|warped - target|`` averaged over channels
            (e.g. the render-weighted per-sample L1 of eq. 8), or None.
        ssim_weight: ``a`` in [0, 1].

    Returns:
        ``[M, h, w]`` error.
    """
    if not 0.0 <= ssim_weight <= 1.0:
        raise ValueError(f"ssim_weight must lie in [0, 1], got {ssim_weight}")
    if l1 is None:
        l1 = (warped - target).abs().mean(dim=1)
    else:
        _same_shape("l1", _tensor("l1", l1), (warped.shape[0], *warped.shape[2:]), "[M, h, w]")
    return ssim_weight * dssim(warped, target).mean(dim=1) + (1.0 - ssim_weight) * l1


def normalize_by_opacity(colors: torch.Tensor, errors: torch.Tensor, opacity: torch.Tensor, *,
                         min_opacity: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sums of a reprojection turned into weight averages (the released code's form).

    ``volrender.render_reprojection`` returns ``sum_i w_i c_ik`` and ``sum_i w_i e_ik``; dividing
    by the ray's opacity ``sum_i w_i`` makes them averages under the normalised weights, so that a
    half-transparent ray is not half as expensive as an opaque one.

    Args:
        colors: ``[B, R, K, CH]`` weighted colour sums.
        errors: ``[B, R, K]`` weighted L1 sums.
        opacity: ``[B, R]`` the rays' opacities (sum of the weights).
        min_opacity: lower clamp of the divisor (rays that meet nothing stay near 0).

    Returns:
        ``(colors, errors)`` with the same shapes.
    """
    _tensor("colors", colors, 4)
    b, r, k, _ = colors.shape
    _same_shape("errors", _tensor("errors", errors), (b, r, k), "[B, R, K]")
    _same_shape("opacity", _tensor("opacity", opacity), (b, r), "[B, R]")
    if not min_opacity > 0:
        raise ValueError(f"min_opacity must be positive, got {min_opacity}")
    norm = opacity.clamp(min=min_opacity)[..., None]
    return colors / norm[..., None], errors / norm


def reprojection_loss(warped: torch.Tensor, source: torch.Tensor, identity: torch.Tensor, *,
                      weighted_l1: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                      ssim_weight: float = 0.85, automask: bool = True) -> torch.Tensor:
    """Photometric reprojection loss (eq. 8) with monodepth2's minimum over targets and auto-masking.

    For each adjacent frame ``k`` the error is ``a * DSSIM(warped_k, source) + (1 - a) * L1_k``,
    where SSIM runs over the ray image and ``L1_k`` is the render-weighted per-sample L1
    (``weighted_l1``, from ``volrender.render_reprojection``) or, if None, the L1 of the
    weight-averaged colour. Per pixel the minimum over the valid targets is taken; with
    ``automask`` the errors of the *unwarped* adjacent images (``identity``, plus 1e-5 so a tie
    goes to the warp) join the minimum, so pixels that look the same without any warp (a static
    camera, objects moving with the ego car, textureless regions) give no gradient.

    Args:
        warped: ``[B, N, h, w, K, 3]`` weight-averaged warped colours per adjacent frame.
        source: ``[B, N, h, w, 3]`` colours of the current frame at the ray pixels.
        identity: ``[B, N, h, w, K, 3]`` colours of the adjacent frames at the same pixels.
        weighted_l1: ``[B, N, h, w, K]`` render-weighted per-sample L1 error, or None.
        valid: ``[B, N, h, w, K]`` bool, False where target ``k`` must not be used for a ray
            (e.g. the earlier frame on dynamic rays); None = all valid. A pixel with no valid
            target falls back to its identity error (no gradient).
        ssim_weight: SSIM share ``a`` (0.85).
        automask: use monodepth2 auto-masking.

    Returns:
        Scalar loss (mean over all pixels).
    """
    _tensor("warped", warped, 6)
    b, n, h, w, k, _ = warped.shape
    _same_shape("warped", warped, (b, n, h, w, k, 3), "[B, N, h, w, K, 3]")
    _same_shape("source", _tensor("source", source), (b, n, h, w, 3), "[B, N, h, w, 3]")
    _same_shape("identity", _tensor("identity", identity), warped.shape, "like warped")

    def as_images(x: torch.Tensor) -> torch.Tensor:  # [B, N, h, w, K, 3] -> [B*N*K, 3, h, w]
        return x.permute(0, 1, 4, 5, 2, 3).reshape(b * n * k, 3, h, w)

    src = source.permute(0, 1, 4, 2, 3)[:, :, None].expand(b, n, k, 3, h, w).reshape(b * n * k, 3, h, w)
    l1 = None
    if weighted_l1 is not None:
        _same_shape("weighted_l1", _tensor("weighted_l1", weighted_l1), (b, n, h, w, k), "[B, N, h, w, K]")
        l1 = weighted_l1.permute(0, 1, 4, 2, 3).reshape(b * n * k, h, w)
    err = photometric_error(as_images(warped), src, l1, ssim_weight=ssim_weight)
    err = err.reshape(b, n, k, h, w).permute(0, 1, 3, 4, 2)                      # [B, N, h, w, K]
    ident = photometric_error(as_images(identity), src, ssim_weight=ssim_weight).detach()
    ident = ident.reshape(b, n, k, h, w).permute(0, 1, 3, 4, 2) + 1e-5
    if valid is not None:
        _bool("valid", valid, (b, n, h, w, k), "[B, N, h, w, K]")
        big = torch.finfo(err.dtype).max / 4
        err = torch.where(valid, err, torch.full_like(err, big))
    candidates = torch.cat([err, ident], dim=-1) if automask else err
    best = candidates.min(dim=-1).values
    if valid is not None and not automask:
        any_valid = valid.any(dim=-1)
        best = torch.where(any_valid, best, ident.min(dim=-1).values)
    return best.mean()


# ----------------------------------------------------------------------------- optical flow
def rigid_flow(pixels: torch.Tensor, points_next: torch.Tensor) -> torch.Tensor:
    """Image motion implied by 3-D points: ``projection in the next frame - pixel`` (eq. 10's f^s).

    Args:
        pixels: ``[..., 2]`` (u, v) pixel of each ray in the current image.
        points_next: ``[..., 2]`` the ray's point projected into the next image (same camera).

    Returns:
        ``[..., 2]`` flow in pixels.
    """
    return points_next - pixels


def dynamic_mask(flow_cue: torch.Tensor, static_flow: torch.Tensor, movable: torch.Tensor,
                 flow_valid: torch.Tensor, threshold: float = 8.0) -> torch.Tensor:
    """Dynamic disentanglement (eq. 10): rays whose cue disagrees with the rigid (static) flow.

    ``f^d = f^opt - f^s``; a ray is dynamic when ``|f^d|_2 > threshold`` pixels AND it lies in a
    movable-object mask AND its cue is valid.

    Args:
        flow_cue: ``[..., 2]`` optical-flow cue ``f^opt`` at the ray pixels, pixels.
        static_flow: ``[..., 2]`` flow ``f^s`` implied by the rendered depth and the ego motion.
        movable: ``[...]`` bool movable-object mask at the ray pixels.
        flow_valid: ``[...]`` bool cue validity.
        threshold: residual threshold in pixels of the loss image (8 px at 256 x 704).

    Returns:
        ``[...]`` bool dynamic mask (no gradient).
    """
    _tensor("flow_cue", flow_cue)
    _same_shape("static_flow", _tensor("static_flow", static_flow), flow_cue.shape, "like flow_cue")
    _bool("movable", movable, flow_cue.shape[:-1], "flow_cue.shape[:-1]")
    _bool("flow_valid", flow_valid, flow_cue.shape[:-1], "flow_cue.shape[:-1]")
    residual = (flow_cue - static_flow).detach().norm(dim=-1)
    return (residual > threshold) & movable & flow_valid


def imbalance_weight(n_all: int | torch.Tensor, n_dynamic: int | torch.Tensor, cap: float = 20.0
                     ) -> torch.Tensor:
    """``gamma = min(M_all / M_d, thre)`` (eq. 11); 0 when there are no dynamic rays.

    Args:
        n_all: number of rays the flow loss covers (M_all).
        n_dynamic: number of dynamic rays among them (M_d).
        cap: the threshold ``thre`` (20 in the released code).

    Returns:
        Scalar float tensor.
    """
    n_all = torch.as_tensor(n_all, dtype=torch.float32)
    n_dynamic = torch.as_tensor(n_dynamic, dtype=torch.float32, device=n_all.device)
    if bool(n_all < 0) or bool(n_dynamic < 0) or bool(n_dynamic > n_all):
        raise ValueError(f"need 0 <= n_dynamic <= n_all, got n_all={float(n_all)}, "
                         f"n_dynamic={float(n_dynamic)}")
    if not cap > 0:
        raise ValueError(f"cap must be positive, got {cap}")
    if float(n_dynamic) == 0:
        return torch.zeros((), dtype=torch.float32, device=n_all.device)
    return torch.clamp(n_all / n_dynamic, max=float(cap))


def flow_target_valid(flow_cue: torch.Tensor, flow_valid: torch.Tensor, *, median_factor: float = 100.0,
                      max_pixels: float = 1e3) -> torch.Tensor:
    """Drop flow targets above ``median_factor`` x the median magnitude or above ``max_pixels``.

    Args:
        flow_cue: ``[..., 2]`` cue in pixels (may hold huge "invalid" values such as 1e7).
        flow_valid: ``[...]`` bool validity from the cue cache.

    Returns:
        ``[...]`` bool: the cue is usable.
    """
    mag = flow_cue.detach().norm(dim=-1)
    ok = flow_valid & torch.isfinite(mag) & (mag <= max_pixels)
    if bool(ok.any()):
        median = mag[ok].median()
        ok = ok & (mag <= median_factor * median.clamp(min=1e-6))
    return ok


def flow_loss(sample_pixels: torch.Tensor, weights: torch.Tensor, pixels: torch.Tensor,
              flow_cue: torch.Tensor, valid: torch.Tensor, dynamic: torch.Tensor, *,
              sample_valid: torch.Tensor | None = None, gamma_cap: float = 20.0,
              detach_dynamic_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Optical-flow loss (eq. 9) with imbalance weighting (eq. 11).

    Per ray ``l = sum_i w_i |O(x) - (p_i - x)|_1`` where ``p_i`` is sample ``i`` (displaced by its
    flow) projected into the adjacent image and ``w_i`` are the render weights normalised to sum
    to 1 along the ray. On dynamic rays the weights are detached, so the flow cue moves the flow
    there and not the geometry. The loss is ``sum_r c_r l_r / M_all`` over the rays with a valid
    cue, with ``c_r = gamma = min(M_all / M_d, gamma_cap)`` on dynamic rays and 1 on static ones:
    the static part is the static flow supervision of geometry, the dynamic part supervises flow.

    Args:
        sample_pixels: ``[B, R, S, 2]`` projections of the (displaced) samples, pixels.
        weights: ``[B, R, S]`` render weights.
        pixels: ``[B, R, 2]`` ray pixels in the current image.
        flow_cue: ``[B, R, 2]`` cue ``O(x)``, pixels.
        valid: ``[B, R]`` bool: a usable cue (and the samples project in front of the camera).
        dynamic: ``[B, R]`` bool dynamic mask (eq. 10).
        sample_valid: ``[B, R, S]`` bool, False for samples whose projection is unusable (behind
            the adjacent camera): they add no error. None = all usable.
        gamma_cap: ``thre`` of eq. 11.
        detach_dynamic_weights: detach the weights on dynamic rays (released behaviour).

    Returns:
        ``(loss, gamma)``: scalar loss and the gamma used (scalar, no gradient).
    """
    _tensor("sample_pixels", sample_pixels, 4)
    b, r, s, _ = sample_pixels.shape
    _same_shape("sample_pixels", sample_pixels, (b, r, s, 2), "[B, R, S, 2]")
    _same_shape("weights", _tensor("weights", weights), (b, r, s), "[B, R, S]")
    _same_shape("pixels", _tensor("pixels", pixels), (b, r, 2), "[B, R, 2]")
    _same_shape("flow_cue", _tensor("flow_cue", flow_cue), (b, r, 2), "[B, R, 2]")
    _bool("valid", valid, (b, r), "[B, R]")
    _bool("dynamic", dynamic, (b, r), "[B, R]")
    dyn = dynamic & valid
    w = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-6)
    if detach_dynamic_weights:
        w = torch.where(dyn[..., None], w.detach(), w)
    cue = torch.where(valid[..., None], flow_cue, torch.zeros_like(flow_cue))
    predicted = sample_pixels - pixels[:, :, None, :]
    per_sample = (cue[:, :, None, :] - predicted).abs().sum(dim=-1)
    keep = valid[..., None]
    if sample_valid is not None:
        keep = keep & _bool("sample_valid", sample_valid, (b, r, s), "[B, R, S]")
    per_sample = torch.where(keep, per_sample, torch.zeros_like(per_sample))
    per_ray = (w * per_sample).sum(dim=-1)
    n_all = valid.sum()
    gamma = imbalance_weight(n_all.cpu(), dyn.sum().cpu(), gamma_cap).to(per_ray.device)
    coeff = torch.where(dyn, gamma.to(per_ray.dtype), torch.ones_like(per_ray))
    coeff = torch.where(valid, coeff, torch.zeros_like(coeff))
    loss = (coeff * per_ray).sum() / n_all.clamp(min=1).to(per_ray.dtype)
    return loss, gamma


def static_flow_regularization(rendered_flow: torch.Tensor, static: torch.Tensor,
                               sample_flow: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                               *, low_weight: float = 1e-3, sample_weight: float = 0.2) -> torch.Tensor:
    """``L_dreg``: no motion where the scene is static.

    ``mean over static rays of |sum_i w_i f_i|_1`` plus ``sample_weight`` x the mean ``|f_i|_1``
    over samples whose render weight is below ``low_weight`` (empty space; released code).

    Args:
        rendered_flow: ``[B, R, 2]`` rendered flow, metres per step.
        static: ``[B, R]`` bool static rays (not dynamic).
        sample_flow: ``[B, R, S, 2]`` flow at the samples, or None to skip the second part.
        weights: ``[B, R, S]`` render weights (with ``sample_flow``).
        low_weight: weight below which a sample counts as empty space.
        sample_weight: factor of the sample part (0.2).

    Returns:
        Scalar loss.
    """
    _tensor("rendered_flow", rendered_flow, 3)
    _bool("static", static, rendered_flow.shape[:2], "[B, R]")
    loss = _masked_mean(rendered_flow.abs().sum(dim=-1), static)
    if sample_flow is not None:
        _tensor("sample_flow", sample_flow, 4)
        _same_shape("weights", _tensor("weights", weights), sample_flow.shape[:3], "[B, R, S]")
        empty = weights.detach() < low_weight
        loss = loss + sample_weight * _masked_mean(sample_flow.abs().sum(dim=-1), empty)
    return loss


# ----------------------------------------------------------------------------- LiDAR
def silog_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, *,
               variance_focus: float = 0.85, min_depth: float = 1e-3) -> torch.Tensor:
    """Scale-invariant log loss ``sqrt(mean d^2 - lambda (mean d)^2)``, ``d = log pred - log target``.

    Args:
        pred: ``[...]`` rendered ranges, metres.
        target: ``[...]`` measured ranges, metres.
        valid: ``[...]`` bool; None = all.
        variance_focus: ``lambda`` (0.85); 1 gives a fully scale-invariant loss.
        min_depth: predictions are clamped to at least this, metres.

    Returns:
        Scalar loss; 0 when no entry is valid.
    """
    _tensor("pred", pred)
    _same_shape("target", _tensor("target", target), pred.shape, "like pred")
    if valid is None:
        valid = torch.ones_like(pred, dtype=torch.bool)
    _bool("valid", valid, pred.shape, "like pred")
    if not 0.0 <= variance_focus <= 1.0:
        raise ValueError(f"variance_focus must lie in [0, 1], got {variance_focus}")
    valid = valid & (target > 0)
    if not bool(valid.any()):
        return pred.sum() * 0.0
    d = torch.log(pred[valid].clamp(min=min_depth)) - torch.log(target[valid])
    value = (d ** 2).mean() - variance_focus * d.mean() ** 2
    return torch.sqrt(value.clamp(min=1e-12))


def free_space_loss(opacity: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean accumulated opacity of rays known to cross the grid without stopping.

    A LiDAR return beyond the grid's box means that the ray's whole segment inside the box is
    empty; its rendered opacity ``sum_i w_i`` should be 0.

    Args:
        opacity: ``[...]`` accumulated render weights in [0, 1] of such rays.
        valid: ``[...]`` bool; None = all.

    Returns:
        Scalar loss in [0, 1]; 0 when no entry is valid.
    """
    _tensor("opacity", opacity)
    if valid is None:
        valid = torch.ones_like(opacity, dtype=torch.bool)
    _bool("valid", valid, opacity.shape, "like opacity")
    return _masked_mean(opacity, valid)


# ----------------------------------------------------------------------------- smoothness, sparsity
def edge_aware_smoothness(values: torch.Tensor, image: torch.Tensor, *,
                          normalize: bool = False) -> torch.Tensor:
    """Edge-aware first-order smoothness (monodepth2): ``|dx v| e^{-|dx I|} + |dy v| e^{-|dy I|}``.

    Args:
        values: ``[M, C, h, w]`` maps on ray images (inverse depth, flow).
        image: ``[M, 3, h, w]`` colours at the same pixels.
        normalize: divide each map by its mean first (monodepth2 does this for inverse depth, so
            the loss does not favour shrinking the scene).

    Returns:
        Scalar loss.
    """
    _tensor("values", values, 4)
    _tensor("image", image, 4)
    if image.shape[0] != values.shape[0] or image.shape[-2:] != values.shape[-2:]:
        raise ValueError(f"image must be [M, 3, h, w] matching values {tuple(values.shape)}, "
                         f"got {tuple(image.shape)}")
    if normalize:
        values = values / values.mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-7)
    dv_x = (values[..., :, 1:] - values[..., :, :-1]).abs()
    dv_y = (values[..., 1:, :] - values[..., :-1, :]).abs()
    di_x = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=1, keepdim=True)
    di_y = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=1, keepdim=True)
    return (dv_x * torch.exp(-di_x)).mean() + (dv_y * torch.exp(-di_y)).mean()


def sparsity_behind_surface(sample_sdf: torch.Tensor, t: torch.Tensor, depth: torch.Tensor, *,
                            margin: float = 3.0) -> torch.Tensor:
    """Mean ``relu(-sdf)`` at samples more than ``margin`` metres behind the rendered depth.

    Keeps surfaces thin: far behind the first surface a ray meets, space is pushed toward free.

    Args:
        sample_sdf: ``[B, R, S]`` SDF at the samples, metres.
        t: ``[B, R, S]`` sample distances along the rays, metres.
        depth: ``[B, R]`` rendered depth (detached inside), metres.
        margin: metres behind the depth.

    Returns:
        Scalar loss.
    """
    _tensor("sample_sdf", sample_sdf, 3)
    _same_shape("t", _tensor("t", t), sample_sdf.shape, "like sample_sdf")
    _same_shape("depth", _tensor("depth", depth), sample_sdf.shape[:2], "[B, R]")
    behind = t > depth.detach()[..., None] + margin
    return _masked_mean(F.relu(-sample_sdf), behind)


def sparsity_grid(sdf: torch.Tensor, grid: GridSpec, *, generator: torch.Generator | None = None,
                  stride: int = 1) -> torch.Tensor:
    """Mean ``relu(-sdf)`` on the cell-centre lattice shifted by one random offset (< 1 voxel).

    A weak prior toward free space everywhere (released code, weight 0.005).

    Args:
        sdf: ``[B, 1, NX, NY, NZ]`` SDF on the vertices of ``grid``, metres.
        grid: the SDF's grid.
        generator: CPU generator for the shift.
        stride: use every ``stride``-th cell along each axis (cheaper on big grids).

    Returns:
        Scalar loss.
    """
    _tensor("sdf", sdf, 5)
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    centres = grid.points("cell", dtype=sdf.dtype, device=sdf.device)[::stride, ::stride, ::stride]
    shift = (torch.rand(3, generator=generator, dtype=sdf.dtype) - 0.5).to(sdf.device)
    voxel = torch.tensor(grid.voxel_size, dtype=sdf.dtype, device=sdf.device)
    pts = (centres + shift * voxel).reshape(1, -1, 3).expand(sdf.shape[0], -1, 3)
    return F.relu(-sample_vertex_field(sdf, grid, pts)).mean()
