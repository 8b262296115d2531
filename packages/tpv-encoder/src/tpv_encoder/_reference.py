"""Naive per-query reference of multi-scale deformable attention (for tests only).

Written independently of ``F.grid_sample``: explicit loops over queries, heads, levels and
points, explicit bilinear weights of the four neighbouring pixels, zero outside the map. Slow;
use on tiny inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _bilinear(img: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Sample ``img`` [D, H, W] at pixel coordinates (x, y) (pixel centres at integers)."""
    _, H, W = img.shape
    x0 = math.floor(float(x.detach()))
    y0 = math.floor(float(y.detach()))
    fx = x - x0
    fy = y - y0
    out = img.new_zeros(img.shape[0])
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            if 0 <= xi < W and 0 <= yi < H:
                out = out + img[:, yi, xi] * (wx * wy)
    return out


def ms_deform_attn_reference(value: Tensor, spatial_shapes: Tensor, sampling_locations: Tensor,
                             attention_weights: Tensor) -> Tensor:
    """Loop-per-query twin of :func:`tpv_encoder.ms_deform_attn` (same arguments and result)."""
    B, S, heads, D = value.shape
    _, Q, _, L, P, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    rows = []
    for b in range(B):
        per_query = []
        for q in range(Q):
            per_head = []
            for m in range(heads):
                acc = value.new_zeros(D)
                for l, (h, w) in enumerate(shapes):
                    img = value[b, starts[l]:starts[l + 1], m, :].T.reshape(D, h, w)
                    for p in range(P):
                        x = sampling_locations[b, q, m, l, p, 0] * w - 0.5
                        y = sampling_locations[b, q, m, l, p, 1] * h - 0.5
                        acc = acc + attention_weights[b, q, m, l, p] * _bilinear(img, x, y)
                per_head.append(acc)
            per_query.append(torch.cat(per_head))
        rows.append(torch.stack(per_query))
    return torch.stack(rows)
