"""Multi-scale deformable attention (Deformable DETR) in plain PyTorch.

The functional op samples every level of a flattened multi-scale value map with
``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``) and sums the samples with the
attention weights. Values are reshaped once per level; nothing is copied per query.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["MultiScaleDeformableAttention", "ms_deform_attn"]


def _check_tensor(name: str, t: object, ndim: int, floating: bool = True) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if floating and not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def _check_spatial_shapes(spatial_shapes: object) -> list[tuple[int, int]]:
    if not isinstance(spatial_shapes, Tensor):
        raise TypeError(f"spatial_shapes must be a torch.Tensor, got {type(spatial_shapes).__name__}")
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2 or spatial_shapes.shape[0] < 1:
        raise ValueError(f"spatial_shapes must be [L, 2] with L >= 1 (H_l, W_l), got shape "
                         f"{tuple(spatial_shapes.shape)}")
    if spatial_shapes.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"spatial_shapes must be an integer (long) tensor, got {spatial_shapes.dtype}")
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    if any(h < 1 or w < 1 for h, w in shapes):
        raise ValueError(f"spatial_shapes entries must be positive, got {shapes}")
    return shapes


def ms_deform_attn(value: Tensor, spatial_shapes: Tensor, sampling_locations: Tensor,
                   attention_weights: Tensor) -> Tensor:
    """Multi-scale deformable attention core: weighted bilinear samples of multi-level values.

    For every query q, head h, level l and point p the value map of level l (head h) is
    sampled bilinearly at ``sampling_locations[b, q, h, l, p]`` and the samples are summed with
    ``attention_weights[b, q, h, l, p]``. Locations follow the Deformable DETR convention
    (``F.grid_sample`` with ``align_corners=False``): ``(0, 0)`` is the top-left corner of the
    top-left pixel and ``(1, 1)`` the bottom-right corner of the bottom-right pixel, so pixel
    ``(i, j)`` (row, column) is centred at ``((j + 0.5) / W_l, (i + 0.5) / H_l)``. Samples outside
    the map read zeros (bilinear blend with zero padding). The weights are used as given (the
    caller normalises them, e.g. by a softmax over levels x points). Inputs of different floating
    dtypes are computed in their promoted dtype (bf16 values with fp32 locations run in fp32).

    Args:
        value: [B, S, heads, head_dim] values of all levels flattened row-major per level and
            concatenated level after level; ``S = sum_l H_l * W_l``.
        spatial_shapes: [L, 2] integer (H_l, W_l) of each level.
        sampling_locations: [B, Q, heads, L, P, 2] normalised (x, y) sampling positions; x runs
            along W_l, y along H_l; [0, 1] covers the map.
        attention_weights: [B, Q, heads, L, P] weight of each sample.

    Returns:
        [B, Q, heads * head_dim] attended values (heads concatenated, head-major).

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: shapes, dtypes or devices do not fit together.

    >>> v = torch.ones(1, 4, 1, 2)
    >>> loc = torch.full((1, 3, 1, 1, 1, 2), 0.5)
    >>> ms_deform_attn(v, torch.tensor([[2, 2]]), loc, torch.ones(1, 3, 1, 1, 1)).shape
    torch.Size([1, 3, 2])
    """
    _check_tensor("value", value, 4)
    shapes = _check_spatial_shapes(spatial_shapes)
    _check_tensor("sampling_locations", sampling_locations, 6)
    _check_tensor("attention_weights", attention_weights, 5)
    B, S, heads, head_dim = value.shape
    L = len(shapes)
    if sum(h * w for h, w in shapes) != S:
        raise ValueError(f"value has S={S} tokens but spatial_shapes {shapes} sum to "
                         f"{sum(h * w for h, w in shapes)}")
    b2, Q, h2, l2, P, two = sampling_locations.shape
    if (b2, h2, l2, two) != (B, heads, L, 2):
        raise ValueError(f"sampling_locations must be [B={B}, Q, heads={heads}, L={L}, P, 2], got "
                         f"{tuple(sampling_locations.shape)}")
    if tuple(attention_weights.shape) != (B, Q, heads, L, P):
        raise ValueError(f"attention_weights must be [B={B}, Q={Q}, heads={heads}, L={L}, P={P}], got "
                         f"{tuple(attention_weights.shape)}")
    for name, t in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        if t.device != value.device:
            raise ValueError(f"{name} is on {t.device} but value is on {value.device}")
    # Mixed dtypes (e.g. bf16 values from a Linear under autocast, fp32 locations) are computed in
    # their promoted dtype, like F.grid_sample under autocast.
    dtype = torch.promote_types(torch.promote_types(value.dtype, sampling_locations.dtype),
                                attention_weights.dtype)
    value, sampling_locations, attention_weights = (
        t.to(dtype) for t in (value, sampling_locations, attention_weights))

    if torch.is_grad_enabled() and (value.requires_grad or sampling_locations.requires_grad
                                    or attention_weights.requires_grad):
        return _MSDeformAttnFunction.apply(value, sampling_locations, attention_weights, tuple(shapes))
    return _ms_deform_attn_forward(value, shapes, sampling_locations, attention_weights)


def _level_sum(value_l: Tensor, h: int, w: int, loc_l: Tensor, weights_l: Tensor) -> Tensor:
    """One level: value_l [B, h*w, heads, D], loc_l [B, Q, heads, P, 2], weights_l [B, Q, heads, P]
    -> [B*heads, D, Q] weighted sum of bilinear samples."""
    B, _, heads, D = value_l.shape
    Q, P = loc_l.shape[1], loc_l.shape[3]
    # One copy of this level's values, shared by all queries.
    v = value_l.permute(0, 2, 3, 1).reshape(B * heads, D, h, w)
    grid = (2.0 * loc_l - 1.0).transpose(1, 2).reshape(B * heads, Q, P, 2)
    wt = weights_l.transpose(1, 2).reshape(B * heads, 1, Q, P)
    sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (sampled * wt).sum(-1)  # [B*heads, D, Q]


def _ms_deform_attn_forward(value: Tensor, shapes: list[tuple[int, int]] | tuple, loc: Tensor,
                            weights: Tensor) -> Tensor:
    B, _, heads, D = value.shape
    Q = loc.shape[1]
    out = None
    start = 0
    for level, (h, w) in enumerate(shapes):
        end = start + h * w
        contrib = _level_sum(value[:, start:end], h, w, loc[:, :, :, level], weights[:, :, :, level])
        start = end
        out = contrib if out is None else out + contrib
    # [B*heads, D, Q] -> [B, Q, heads*D]
    return out.reshape(B, heads, D, Q).permute(0, 3, 1, 2).reshape(B, Q, heads * D)


class _MSDeformAttnFunction(torch.autograd.Function):
    """Saves only the inputs; the backward pass recomputes the samples level by level.

    Plain autograd would keep every level's [B*heads, D, Q, P] samples alive until the backward
    pass (for the weight gradient), which dominates the memory of a TPV encoder; recomputing
    them costs one extra ``grid_sample`` forward per level.
    """

    @staticmethod
    def forward(ctx, value: Tensor, loc: Tensor, weights: Tensor, shapes: tuple) -> Tensor:
        ctx.shapes = shapes
        ctx.save_for_backward(value, loc, weights)
        return _ms_deform_attn_forward(value, shapes, loc, weights)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple:
        value, loc, weights = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        B, _, heads, D = value.shape
        Q = loc.shape[1]
        g = grad_out.reshape(B, Q, heads, D).permute(0, 2, 3, 1).reshape(B * heads, D, Q)
        grads = [torch.zeros_like(t) if n else None for t, n in zip((value, loc, weights), need, strict=True)]
        start = 0
        for level, (h, w) in enumerate(ctx.shapes):
            end = start + h * w
            with torch.enable_grad():
                parts = [value[:, start:end], loc[:, :, :, level], weights[:, :, :, level]]
                parts = [t.detach().requires_grad_(n) for t, n in zip(parts, need, strict=True)]
                out_l = _level_sum(parts[0], h, w, parts[1], parts[2])
                got = iter(torch.autograd.grad(out_l, [t for t, n in zip(parts, need, strict=True) if n], g))
            if need[0]:
                grads[0][:, start:end] = next(got)
            if need[1]:
                grads[1][:, :, :, level] = next(got)
            if need[2]:
                grads[2][:, :, :, level] = next(got)
            start = end
        return grads[0], grads[1], grads[2], None


class MultiScaleDeformableAttention(nn.Module):
    """Deformable DETR attention module: offsets and weights predicted from the query.

    For each query, ``num_heads x num_levels x num_points`` sampling offsets (in units of each
    level's cells) and attention weights (softmax over levels x points per head) are predicted
    by linear layers of the query; values are projected, sampled with :func:`ms_deform_attn`
    around the reference points, and the result is projected back to ``embed_dim``. There is
    no residual connection and no dropout: the caller adds them.

    Reference points may carry ``A`` anchors per level (``[B, Q, L, A, 2]``, TPVFormer's pillar
    points); the ``num_points`` points of a level are then split evenly over the anchors
    (``num_points % A == 0``).

    Initialisation follows Deformable DETR: zero offset weights, offset biases pointing each
    head in its own direction with point k at distance k + 1 cells, zero attention weights
    (uniform softmax), Xavier-uniform value and output projections.

    Args:
        embed_dim: channels C of queries and values.
        num_heads: attention heads; must divide ``embed_dim``.
        num_levels: levels L of the value map.
        num_points: sampling points P per head and level.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_levels: int, num_points: int) -> None:
        super().__init__()
        for name, v in (("embed_dim", embed_dim), ("num_heads", num_heads), ("num_levels", num_levels),
                        ("num_points", num_points)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR initialisation (see the class docstring)."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float64) * (2.0 * math.pi / self.num_heads)
        dirs = torch.stack([angles.cos(), angles.sin()], -1)
        dirs = dirs / dirs.abs().max(-1, keepdim=True).values  # on the unit square's border
        scale = torch.arange(1, self.num_points + 1, dtype=torch.float64)
        bias = dirs[:, None, None, :] * scale[None, None, :, None]
        bias = bias.expand(self.num_heads, self.num_levels, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1).to(self.sampling_offsets.bias.dtype))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: Tensor, value: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                value_mask: Tensor | None = None, point_mask: Tensor | None = None) -> Tensor:
        """Attend from each query to points around its reference points on every level.

        Args:
            query: [B, Q, C] queries (add any positional embedding before calling).
            value: [B, S, C] flattened multi-level values, ``S = sum_l H_l * W_l``.
            reference_points: [B, Q, L, 2] normalised (x, y) in [0, 1] per level (x along W_l),
                or [B, Q, L, A, 2] with A anchors per level (``num_points % A == 0``).
            spatial_shapes: [L, 2] integer (H_l, W_l) of each level.
            value_mask: optional [B, S] bool, True where a value is valid; False values are
                zeroed after projection.
            point_mask: optional [B, Q, A] bool (A = 1 for 4-D reference points), True where an
                anchor may be attended; masked anchors get zero weight and the softmax is taken
                over the remaining points. A query with every anchor masked gets zero weights
                (its output is the output projection's bias).

        Returns:
            [B, Q, C] attended features (no residual added).
        """
        _check_tensor("query", query, 3)
        _check_tensor("value", value, 3)
        shapes = _check_spatial_shapes(spatial_shapes)
        B, Q, C = query.shape
        L, P, H = self.num_levels, self.num_points, self.num_heads
        if C != self.embed_dim:
            raise ValueError(f"query must have {self.embed_dim} channels, got shape {tuple(query.shape)}")
        if value.shape[0] != B or value.shape[2] != C:
            raise ValueError(f"value must be [B={B}, S, C={C}], got {tuple(value.shape)}")
        if len(shapes) != L:
            raise ValueError(f"spatial_shapes must have num_levels={L} rows, got {len(shapes)}")
        if not isinstance(reference_points, Tensor):
            raise TypeError(f"reference_points must be a torch.Tensor, got {type(reference_points).__name__}")
        if reference_points.dim() == 4:
            reference_points = reference_points.unsqueeze(3)
        if (reference_points.dim() != 5 or tuple(reference_points.shape[:3]) != (B, Q, L)
                or reference_points.shape[-1] != 2):
            raise ValueError(f"reference_points must be [B={B}, Q={Q}, L={L}, 2] or [B, Q, L, A, 2], got "
                             f"{tuple(reference_points.shape)}")
        A = reference_points.shape[3]
        if P % A:
            raise ValueError(f"num_points ({P}) must be divisible by the anchors per level ({A})")
        S = value.shape[1]

        v = self.value_proj(value)
        if value_mask is not None:
            if not isinstance(value_mask, Tensor) or value_mask.dtype != torch.bool \
                    or tuple(value_mask.shape) != (B, S):
                raise ValueError(f"value_mask must be a bool tensor [B={B}, S={S}], got "
                                 f"{getattr(value_mask, 'shape', type(value_mask))}")
            v = v.masked_fill(~value_mask[..., None], 0.0)
        v = v.reshape(B, S, H, C // H)

        offsets = self.sampling_offsets(query).reshape(B, Q, H, L, A, P // A, 2)
        sizes = spatial_shapes.to(device=query.device, dtype=query.dtype).flip(-1)  # (W_l, H_l)
        offsets = offsets / sizes[None, None, None, :, None, None, :]
        locations = reference_points[:, :, None, :, :, None, :].to(query.dtype) + offsets
        locations = locations.reshape(B, Q, H, L, P, 2)

        logits = self.attention_weights(query).reshape(B, Q, H, L, A, P // A)
        if point_mask is not None:
            if not isinstance(point_mask, Tensor) or point_mask.dtype != torch.bool \
                    or tuple(point_mask.shape) != (B, Q, A):
                raise ValueError(f"point_mask must be a bool tensor [B={B}, Q={Q}, A={A}], got "
                                 f"{getattr(point_mask, 'shape', type(point_mask))}")
            keep = point_mask[:, :, None, None, :, None]
            logits = logits.masked_fill(~keep, torch.finfo(logits.dtype).min)
        weights = logits.reshape(B, Q, H, L * P).softmax(-1).reshape(B, Q, H, L, A, P // A)
        if point_mask is not None:
            weights = weights * keep.to(weights.dtype)
        weights = weights.reshape(B, Q, H, L, P)

        out = ms_deform_attn(v, spatial_shapes, locations, weights)
        return self.output_proj(out)
