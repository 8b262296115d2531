"""NeuS volume rendering of SDF + feature vertex grids along rays (public API)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import _checks as C
from . import _reference as ref
from ._grid import GridSpec


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render_rays` returns. ``B`` batch, ``R`` rays, ``S`` samples, ``C`` feature channels.

    Attributes:
        depth: ``[B, R]`` expected distance along each unit ray from its origin, metres
            (``sum_i w_i t_i``; not divided by the opacity). 0 for rays that miss the box.
        features: ``[B, R, C]`` weight-summed features (``sum_i w_i f_i``), or None without features.
        opacity: ``[B, R]`` accumulated weight ``sum_i w_i`` in [0, 1].
        weights: ``[B, R, S]`` per-sample NeuS weights ``w_i`` (only with ``return_samples=True``).
        t: ``[B, R, S]`` sample (interval midpoint) distances along the ray, metres; 0 for missed rays.
        points: ``[B, R, S, 3]`` sample positions ``origin + t * direction``, metres.
    """

    depth: torch.Tensor
    features: torch.Tensor | None
    opacity: torch.Tensor
    weights: torch.Tensor | None = None
    t: torch.Tensor | None = None
    points: torch.Tensor | None = None


@dataclass(frozen=True)
class _Prepared:
    sdf: torch.Tensor
    features: torch.Tensor | None
    origins: torch.Tensor
    directions: torch.Tensor
    t0: torch.Tensor
    t1: torch.Tensor
    inv_s: torch.Tensor
    edges: torch.Tensor | None
    threshold: float


def _prepare(sdf, features, grid, origins, directions, n_samples, inv_s, near, far, stratified, generator,
             transmittance_threshold) -> _Prepared:
    grid = C.check_grid(grid)
    pending: list = []        # value checks, evaluated together with one device -> host copy
    sdf = C.check_vertex_field(sdf, "sdf", grid, channels=1, finite=False)
    pending.append(C.nonfinite(sdf, "sdf"))
    if features is not None:
        features = C.check_vertex_field(features, "features", grid, batch=sdf.shape[0], like=sdf,
                                        finite=False)
        pending.append(C.nonfinite(features, "features"))
    origins, directions = C.check_rays(origins, directions, sdf, pending)
    C.check_int(n_samples, "n_samples", 1)
    inv_s = C.check_inv_s(inv_s, sdf, pending)
    shape = tuple(origins.shape[:2])
    near_t = C.check_distance(near, "near", 0.0, shape, sdf)
    far_t = C.check_distance(far, "far", float("inf"), shape, sdf)
    if not isinstance(stratified, bool):
        raise TypeError(f"stratified must be a bool, got {type(stratified).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    threshold = C.check_threshold(transmittance_threshold, "transmittance_threshold")
    C.raise_pending(pending)
    origins = origins.detach().contiguous()
    directions = directions.detach().contiguous()
    t0, t1 = ref.ray_box_interval(origins, directions, grid, near_t, far_t)
    edges = None
    if stratified:
        edges = ref.stratified_edges(shape, n_samples, generator, sdf.dtype, sdf.device)
    return _Prepared(sdf, features, origins, directions, t0.contiguous(), t1.contiguous(), inv_s, edges,
                     threshold)


def render_rays(sdf: torch.Tensor, features: torch.Tensor | None, grid: GridSpec, origins: torch.Tensor,
                directions: torch.Tensor, *, n_samples: int, inv_s: float | torch.Tensor,
                near: float | torch.Tensor | None = None, far: float | torch.Tensor | None = None,
                stratified: bool = False, generator: torch.Generator | None = None,
                return_samples: bool = False, backend: str = "warp",
                transmittance_threshold: float = 1e-6,
                cos_anneal_ratio: float | None = None) -> RenderResult:
    """Render depth, features and opacity of an SDF vertex grid along rays with NeuS weights.

    Each ray's segment inside the grid's box (slab test), clipped to ``[near, far]``, is split into
    ``S = n_samples`` equal intervals (jittered with ``stratified=True``). The SDF is read by
    trilinear interpolation at the ``S + 1`` interval boundaries ``s_0..s_S`` and the NeuS opacity
    of interval ``i`` is (Let Occ Flow eq. 13, NeuS)::

        alpha_i = clamp((Phi(s_i) - Phi(s_{i+1})) / Phi(s_i), 0, 1),   Phi(x) = sigmoid(inv_s * x)

    evaluated in the cancellation-free form ``(1 - exp(b - a)) * sigmoid(-b)`` (``a = inv_s s_i``,
    ``b = inv_s s_{i+1}``), which gives no NaN where the sigmoid underflows. Then
    ``T_i = prod_{j<i} (1 - alpha_j)``, ``w_i = T_i alpha_i`` and, at interval midpoints ``t_i``,
    ``depth = sum w_i t_i``, ``features = sum w_i f(x(t_i))``, ``opacity = sum w_i`` (eq. 14).

    Early termination: samples whose transmittance ``T_i`` is below ``transmittance_threshold``
    get weight 0 (both backends; the default 1e-6 changes opacity by at most 1e-6). Rays that
    miss the box (or whose ``[near, far]`` does not meet it) render zeros.

    Differentiable w.r.t. ``sdf``, ``features`` and ``inv_s`` (when a tensor) and, with
    ``return_samples=True``, through ``weights`` too. Not differentiable w.r.t. the rays.

    Args:
        sdf: ``[B, 1, NX + 1, NY + 1, NZ + 1]`` signed distance on the grid's vertices, metres;
            float32 or float64.
        features: ``[B, C, NX + 1, NY + 1, NZ + 1]`` vertex features (e.g. flow, ``C = 2``) with the
            dtype and device of ``sdf``, or None.
        grid: the :class:`GridSpec` of both fields.
        origins: ``[B, R, 3]`` ray origins in the grid's frame, metres.
        directions: ``[B, R, 3]`` unit ray directions (``|d|`` within 1e-3 of 1).
        n_samples: number of intervals ``S`` per ray (>= 1).
        inv_s: NeuS sharpness ``> 0`` (1/m): a float or a one-element tensor (gets a gradient).
        near: start distance along the ray (float or tensor broadcastable to ``[B, R]``), metres;
            default 0 (the origin).
        far: end distance, metres; default unbounded (the box's exit).
        stratified: jitter each interval boundary ``k`` uniformly in ``[k - 1/2, k + 1/2]`` interval
            lengths (the first and last are kept inside the segment).
        generator: ``torch.Generator`` for the jitter (its device is used to draw, then moved).
        return_samples: also return per-sample ``weights``, ``t`` and ``points``.
        backend: ``"warp"`` (fused Warp kernels with a hand-written backward) or ``"torch"``
            (the pure-PyTorch reference).
        transmittance_threshold: early-termination threshold in ``[0, 1)``; 0 disables it.
        cos_anneal_ratio: None for the boundary form above (eq. 13). A float in ``[0, 1]`` selects
            the estimate of the released NeuS/Let Occ Flow code: the SDF ``s`` and its gradient
            ``g`` (central differences on the grid, trilinearly interpolated) are read at each
            midpoint, ``c = -(relu(0.5 - 0.5 d.g) (1 - r) + relu(-d.g) r)`` and the boundary values
            are estimated as ``s -/+ c * dt / 2`` (``r`` anneals from 0 to 1 during training).
            Both backends implement it; the Warp kernels read the 4-channel field
            ``[sdf, sdf_gradient(sdf)]`` and autograd carries the gradient channels back to the SDF.

    Returns:
        A :class:`RenderResult`.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: wrong shapes, dtypes, devices, non-finite values, non-unit directions.

    >>> import torch, volrender
    >>> grid = volrender.GridSpec((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), (16, 16, 16))
    >>> sdf = (grid.points("vertex").norm(dim=-1) - 0.5)[None, None]
    >>> o = torch.tensor([[[-2.0, 0.0, 0.0]]]); d = torch.tensor([[[1.0, 0.0, 0.0]]])
    >>> out = volrender.render_rays(sdf, None, grid, o, d, n_samples=256, inv_s=200.0, backend="torch")
    >>> round(out.depth.item(), 2), round(out.opacity.item(), 3)
    (1.5, 1.0)
    """
    C.check_backend(backend)
    if not isinstance(return_samples, bool):
        raise TypeError(f"return_samples must be a bool, got {type(return_samples).__name__}")
    if cos_anneal_ratio is not None:
        if isinstance(cos_anneal_ratio, bool) or not isinstance(cos_anneal_ratio, (int, float)) \
                or not 0.0 <= cos_anneal_ratio <= 1.0:
            raise ValueError(f"cos_anneal_ratio must be None or a float in [0, 1], got {cos_anneal_ratio!r}")
    p = _prepare(sdf, features, grid, origins, directions, n_samples, inv_s, near, far, stratified, generator,
                 transmittance_threshold)
    if backend == "torch":
        out = ref.render_rays(p.sdf, p.features, grid, p.origins, p.directions, p.t0, p.t1, n_samples,
                              p.inv_s, p.edges, p.threshold, cos_anneal_ratio)
        depth, feats, opacity, weights, t = (out["depth"], out["features"], out["opacity"], out["weights"],
                                             out["t"])
    else:
        from ._ops import RenderRaysFn

        geo = p.sdf.contiguous()
        if cos_anneal_ratio is not None:      # the kernels read [sdf, grad sdf] at midpoints
            geo = torch.cat([geo, ref.sdf_gradient(p.sdf, grid)], dim=1).contiguous()
        depth, opacity, feats, weights = RenderRaysFn.apply(
            geo, None if p.features is None else p.features.contiguous(), p.inv_s, grid,
            p.origins, p.directions, p.t0, p.t1, p.edges, n_samples, p.threshold, return_samples,
            None if cos_anneal_ratio is None else float(cos_anneal_ratio))
        if p.features is None:
            feats = None
        t = None
        if return_samples:
            bounds, hit = ref.sample_boundaries(p.t0, p.t1, n_samples, p.edges)
            t = 0.5 * (bounds[..., 1:] + bounds[..., :-1]) * hit[..., None]
    if not return_samples:
        return RenderResult(depth=depth, features=feats, opacity=opacity)
    points = p.origins[:, :, None, :] + t[..., None] * p.directions[:, :, None, :]
    return RenderResult(depth=depth, features=feats, opacity=opacity, weights=weights, t=t, points=points)


@dataclass(frozen=True)
class ReprojectionResult:
    """What :func:`render_reprojection` returns. ``K`` target images with ``CH`` channels each.

    Attributes:
        colors: ``[B, R, K, CH]`` weight-averaged warped colour of each ray in target ``k``:
            ``sum_i w_i m_ik c_ik / sum_i w_i m_ik``; 0 where the coverage is 0.
        errors: ``[B, R, K]`` weight-averaged per-sample photometric L1 error
            ``sum_i w_i m_ik |c_ik - source|_1 / CH / sum_i w_i m_ik`` (eq. 8 with normalised
            weights); 0 where the coverage is 0.
        coverage: ``[B, R, K]`` render weight that lands inside target ``k``'s image,
            ``sum_i w_i m_ik`` in ``[0, opacity]`` (``m_ik`` = 1 if sample ``i`` projects in front of
            camera ``k`` and inside its image). Use it to mask rays whose surface target ``k`` does not see.
        opacity: ``[B, R]`` accumulated weight ``sum_i w_i``.
    """

    colors: torch.Tensor
    errors: torch.Tensor
    coverage: torch.Tensor
    opacity: torch.Tensor


def _flow_scale(flow_scale, flow, b: int, k: int, like: torch.Tensor) -> torch.Tensor:
    if flow is None:
        if flow_scale is not None:
            raise ValueError("flow_scale was given without a flow field")
        return torch.zeros((b, k), dtype=like.dtype, device=like.device)
    if flow_scale is None:
        return torch.ones((b, k), dtype=like.dtype, device=like.device)
    if isinstance(flow_scale, (int, float)) and not isinstance(flow_scale, bool):
        flow_scale = [float(flow_scale)] * k
    if isinstance(flow_scale, (list, tuple)):
        flow_scale = torch.tensor(flow_scale, dtype=like.dtype, device=like.device)
    C.check_float_tensor(flow_scale, "flow_scale")
    if flow_scale.device != like.device:
        raise ValueError(f"flow_scale must be on device {like.device}, got {flow_scale.device}")
    if tuple(flow_scale.shape) not in ((k,), (b, k)):
        raise ValueError(f"flow_scale must have shape [K={k}] or [B={b}, K={k}], "
                         f"got {tuple(flow_scale.shape)}")
    return flow_scale.detach().to(like.dtype).expand(b, k).contiguous()


def render_reprojection(sdf: torch.Tensor, flow: torch.Tensor | None, grid: GridSpec, origins: torch.Tensor,
                        directions: torch.Tensor, source_colors: torch.Tensor, target_images: torch.Tensor,
                        intrinsics: torch.Tensor, target_from_grid: torch.Tensor, *, n_samples: int,
                        inv_s: float | torch.Tensor,
                        flow_scale: float | list[float] | torch.Tensor | None = None,
                        near: float | torch.Tensor | None = None, far: float | torch.Tensor | None = None,
                        stratified: bool = False, generator: torch.Generator | None = None,
                        transmittance_threshold: float = 1e-6, backend: str = "warp") -> ReprojectionResult:
    """Fused photometric reprojection of NeuS samples into K target images (Let Occ Flow eq. 8).

    Samples and weights ``w_i`` are exactly those of :func:`render_rays` with the same arguments.
    Each sample's midpoint ``x_i`` is displaced by ``flow_scale[b, k] * f(x_i)`` (``f`` trilinear in
    the ``flow`` field; 2 channels mean ``(dx, dy, 0)``), mapped into target camera ``k`` by
    ``target_from_grid`` and projected with ``intrinsics``; where it lies in front of the camera
    (depth > 1 mm) and inside the image (pixel centres at integer coordinates: ``0 <= u <= W - 1``,
    ``0 <= v <= H - 1``) its colour ``c_ik`` is read bilinearly. Per ray and target only weighted sums
    are kept, so memory is O(B R K), never O(B R S).

    Differentiable w.r.t. ``sdf``, ``flow``, ``target_images`` and ``inv_s`` (a tensor); the source
    colours, cameras, ``flow_scale`` and rays are constants.

    Args:
        sdf: ``[B, 1, NX + 1, NY + 1, NZ + 1]`` vertex SDF, metres (float32/float64).
        flow: ``[B, 2 or 3, NX + 1, NY + 1, NZ + 1]`` vertex displacement field in the grid's frame,
            metres per supervision step, or None (static scene).
        grid: :class:`GridSpec` of the fields.
        origins, directions: ``[B, R, 3]`` rays in the grid's frame (unit directions), metres.
        source_colors: ``[B, R, CH]`` colour of each ray's pixel in the source image.
        target_images: ``[B, K, CH, H, W]`` target images (H, W >= 2).
        intrinsics: ``[B, K, 3, 3]`` pixel intrinsics of the targets.
        target_from_grid: ``[B, K, 4, 4]`` rigid transforms from the grid's frame to each target camera
            (OpenCV: x right, y down, z forward), metres.
        n_samples, inv_s, near, far, stratified, generator, transmittance_threshold: as in
            :func:`render_rays`.
        flow_scale: multiplier of the flow displacement per target: a float, ``K`` floats or a
            tensor ``[K]``/``[B, K]`` (e.g. 1 for the next frame, 0 for a frame warped rigidly).
            Default 1 when ``flow`` is given; must be None without ``flow``.
        backend: ``"warp"`` (fused kernels, hand-written backward) or ``"torch"`` (reference).

    Returns:
        A :class:`ReprojectionResult` (colours, errors, coverage ``[B, R, K]``, opacity ``[B, R]``).
    """
    C.check_backend(backend)
    p = _prepare(sdf, None, grid, origins, directions, n_samples, inv_s, near, far, stratified, generator,
                 transmittance_threshold)
    b, r = p.t0.shape
    if flow is not None:
        flow = C.check_vertex_field(flow, "flow", grid, batch=b, like=p.sdf)
        if flow.shape[1] not in (2, 3):
            raise ValueError(f"flow must have 2 (dx, dy) or 3 channels, got shape {tuple(flow.shape)}")
    images = C.check_float_tensor(target_images, "target_images", ndim=5, like=p.sdf)
    if images.shape[0] != b or images.shape[1] < 1 or images.shape[2] < 1 or min(images.shape[3:]) < 2:
        raise ValueError(f"target_images must have shape [B={b}, K>=1, CH>=1, H>=2, W>=2], "
                         f"got {tuple(images.shape)}")
    k, ch = images.shape[1:3]
    source = C.check_float_tensor(source_colors, "source_colors", ndim=3, like=p.sdf)
    if tuple(source.shape) != (b, r, ch):
        raise ValueError(f"source_colors must have shape [B={b}, R={r}, CH={ch}] (CH of target_images), "
                         f"got {tuple(source.shape)}")
    intr = C.check_float_tensor(intrinsics, "intrinsics", ndim=4, like=p.sdf)
    if tuple(intr.shape) != (b, k, 3, 3):
        raise ValueError(f"intrinsics must have shape [B={b}, K={k}, 3, 3], got {tuple(intr.shape)}")
    pose = C.check_float_tensor(target_from_grid, "target_from_grid", ndim=4, like=p.sdf)
    if tuple(pose.shape) != (b, k, 4, 4):
        raise ValueError(f"target_from_grid must have shape [B={b}, K={k}, 4, 4], got {tuple(pose.shape)}")
    scale = _flow_scale(flow_scale, flow, b, k, p.sdf)
    source = source.detach().contiguous()
    intr = intr.detach().contiguous()
    pose = pose.detach().contiguous()
    if backend == "torch":
        out = ref.render_reprojection(p.sdf, flow, grid, p.origins, p.directions, p.t0, p.t1, n_samples,
                                      p.inv_s, p.edges, p.threshold, source, images, intr, pose, scale)
        opacity, col, err, cov = out["opacity"], out["col"], out["err"], out["cov"]
    else:
        from ._ops import ReprojectFn

        opacity, col, err, cov = ReprojectFn.apply(
            p.sdf.contiguous(), None if flow is None else flow.contiguous(), images.contiguous(), p.inv_s,
            grid, p.origins, p.directions, p.t0, p.t1, p.edges, n_samples, p.threshold, source, intr, pose,
            scale)
    seen = cov > 1e-12
    den = torch.where(seen, cov, torch.ones_like(cov))
    colors = torch.where(seen[..., None], col / den[..., None], torch.zeros_like(col))
    errors = torch.where(seen, err / den, torch.zeros_like(err))
    return ReprojectionResult(colors=colors, errors=errors, coverage=cov, opacity=opacity)
