"""Temporal deformable attention between adjacent BEV maps (eq. 5) and the Backward-Forward
Attention Module (Algorithm 1, lines 7-12)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from tpv_encoder import ms_deform_attn

__all__ = ["BackwardForwardAttention", "TemporalBEVAttention", "TemporalDeformableAttention"]


def _positive_int(name: str, v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return v


def _check_map(name: str, t: object, like: Tensor | None = None) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4:
        raise ValueError(f"{name} must be a BEV map [N, C, H, W], got {list(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if like is not None and t.shape != like.shape:
        raise ValueError(f"{name} must have the shape of the query map {list(like.shape)}, "
                         f"got {list(t.shape)}")
    return t


def _reference_points(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[H * W, 2] normalised (x along W, y along H) centres of the cells, row-major."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(h * w, 2)


class TemporalDeformableAttention(nn.Module):
    """Deformable attention from one BEV map to itself and an adjacent frame's map.

    ``DAttn(B_j, {B_i, B_j})`` of eq. 5, built like BEVFormer's temporal self-attention: the
    two maps form a queue of two single-level value maps. Sampling offsets (in cells) and
    attention weights are predicted from the concatenation ``[B_i, B_j]`` at each query cell,
    separately for each of the two maps (softmax over the ``num_points`` points of a map and
    head); both maps are sampled with :func:`tpv_encoder.ms_deform_attn` around the query's own
    cell, the two results are averaged and projected back. No residual (the caller adds it).

    Initialisation as Deformable DETR: zero offset weights with biases pointing each head in
    its own direction (point k at k + 1 cells), zero attention weights (uniform), Xavier value
    and output projections.

    Args:
        embed_dim: C, channels of the maps.
        num_heads: attention heads (must divide C).
        num_points: sampling points per head and per map.
    """

    queue = 2

    def __init__(self, embed_dim: int, num_heads: int, num_points: int) -> None:
        super().__init__()
        _positive_int("embed_dim", embed_dim)
        _positive_int("num_heads", num_heads)
        _positive_int("num_points", num_points)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_points = num_points
        q = self.queue
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.sampling_offsets = nn.Linear(q * embed_dim, q * num_heads * num_points * 2)
        self.attention_weights = nn.Linear(q * embed_dim, q * num_heads * num_points)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR initialisation (see the class docstring)."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float64) * (2.0 * math.pi / self.num_heads)
        dirs = torch.stack([angles.cos(), angles.sin()], -1)
        dirs = dirs / dirs.abs().max(-1, keepdim=True).values
        scale = torch.arange(1, self.num_points + 1, dtype=torch.float64)
        # Layout [heads, queue, points, 2], as read in ``forward``.
        bias = (dirs[:, None, None, :] * scale[None, None, :, None]).expand(-1, self.queue, -1, -1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1).to(self.sampling_offsets.bias.dtype))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: Tensor, other: Tensor) -> Tensor:
        """Attend from each cell of ``query`` to points of ``other`` and of ``query`` itself.

        Args:
            query: [N, C, H, W] BEV maps of the frame being updated (B_j), H along ego x and
                W along ego y; N folds batch and BEV maps (slices) together.
            other: [N, C, H, W] BEV maps of the adjacent frame (B_i), same grid.

        Returns:
            [N, C, H, W] attended features (no residual).
        """
        _check_map("query", query)
        _check_map("other", other, like=query)
        N, C, H, W = query.shape
        if C != self.embed_dim:
            raise ValueError(f"query must have {self.embed_dim} channels, got {list(query.shape)}")
        S, q, heads, P = H * W, self.queue, self.num_heads, self.num_points
        tok_q = query.flatten(2).transpose(1, 2)  # [N, S, C]
        tok_o = other.flatten(2).transpose(1, 2)
        # Queue order: (other, query), the order of {B_i, B_j} in eq. 5.
        values = self.value_proj(torch.cat([tok_o, tok_q], dim=0))  # [q*N, S, C]
        values = values.reshape(q * N, S, heads, C // heads)
        both = torch.cat([tok_o, tok_q], dim=-1)  # [N, S, 2C]
        offsets = self.sampling_offsets(both).reshape(N, S, heads, q, P, 2)
        size = torch.tensor([W, H], device=query.device, dtype=query.dtype)
        ref = _reference_points(H, W, query.device, query.dtype)  # [S, 2]
        locations = ref[None, :, None, None, None, :] + offsets / size
        # -> [q*N, S, heads, L=1, P, 2], queue-major like ``values``.
        locations = locations.permute(3, 0, 1, 2, 4, 5).reshape(q * N, S, heads, 1, P, 2)
        weights = self.attention_weights(both).reshape(N, S, heads, q, P).softmax(-1)
        weights = weights.permute(3, 0, 1, 2, 4).reshape(q * N, S, heads, 1, P)
        shapes = torch.tensor([[H, W]], dtype=torch.long, device=query.device)
        out = ms_deform_attn(values, shapes, locations, weights)  # [q*N, S, C]
        out = self.output_proj(out.reshape(q, N, S, C).mean(0))
        return out.transpose(1, 2).reshape(N, C, H, W)


class TemporalBEVAttention(nn.Module):
    """One step of eq. 5: ``B_j <- B_j + beta * DAttn(B_j, {B_i, B_j})``.

    ``beta`` is a learnable scalar (initialised to ``beta_init``, 1 in the paper).

    Args:
        embed_dim: C, channels of the maps.
        num_heads: attention heads.
        num_points: sampling points per head and map.
        beta_init: initial value of beta.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_points: int, beta_init: float = 1.0) -> None:
        super().__init__()
        if not math.isfinite(float(beta_init)):
            raise ValueError(f"beta_init must be finite, got {beta_init!r}")
        self.attn = TemporalDeformableAttention(embed_dim, num_heads, num_points)
        self.beta = nn.Parameter(torch.tensor(float(beta_init)))

    def forward(self, query: Tensor, other: Tensor) -> Tensor:
        """Update ``query`` [N, C, H, W] from the adjacent frame's ``other`` [N, C, H, W]."""
        return query + self.beta * self.attn(query, other)


class BackwardForwardAttention(nn.Module):
    """The Backward-Forward Attention Module (BFAM, Algorithm 1 lines 7-12).

    With frames ``B_{-(n-1)}, ..., B_{-1}, B_0`` (B_0 current), age-indexed step modules
    ``backward[i]`` and ``forward[i]`` (i = 0 .. num_history - 1) act on the pair of frames of
    ages i and i + 1:

    - backward pass, i = 0 .. n-2: ``B_{-(i+1)} <- backward[i](B_{-(i+1)}, B_{-i})`` (the
      current frame's information travels back to the oldest frame);
    - forward pass, i = n-2 .. 0: ``B_{-i} <- forward[i](B_{-i}, B_{-(i+1)})`` (everything
      travels back up to the current frame).

    ``forward_only=True`` drops the backward pass (Table 4's "forward attention" variant,
    num_history modules instead of 2 num_history). Fewer frames than ``num_history + 1`` use
    the modules of the youngest pairs.

    Args:
        embed_dim: C, channels of the maps.
        num_heads: attention heads.
        num_points: sampling points per head and map.
        num_history: k, the largest number of history frames (Q = k + 1 frames in all).
        forward_only: drop the backward pass.
        beta_init: initial beta of every step.
        checkpoint: run each step in chunks of ``checkpoint_chunk`` maps (along N) and recompute
            each chunk in the backward pass instead of keeping its intermediates
            (``torch.utils.checkpoint``); same results, much less memory in training (the
            pure-PyTorch deformable attention keeps every sampled point), about one more
            forward pass of time.
        checkpoint_chunk: maps per checkpointed chunk.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_points: int, num_history: int, *,
                 forward_only: bool = False, beta_init: float = 1.0, checkpoint: bool = False,
                 checkpoint_chunk: int = 1) -> None:
        super().__init__()
        _positive_int("num_history", num_history)
        _positive_int("checkpoint_chunk", checkpoint_chunk)
        self.num_history = num_history
        self.forward_only = bool(forward_only)
        self.checkpoint = bool(checkpoint)
        self.checkpoint_chunk = checkpoint_chunk
        self.forward_steps = nn.ModuleList(
            TemporalBEVAttention(embed_dim, num_heads, num_points, beta_init) for _ in range(num_history))
        self.backward_steps = nn.ModuleList(
            [] if forward_only else
            [TemporalBEVAttention(embed_dim, num_heads, num_points, beta_init) for _ in range(num_history)])

    def forward(self, maps: Sequence[Tensor]) -> Tensor:
        """Fuse a sequence of BEV maps into the current one.

        Args:
            maps: n tensors [N, C, H, W], oldest first and the current frame last
                (1 <= n <= num_history + 1).

        Returns:
            [N, C, H, W] the fused current map (the input itself when n == 1).
        """
        if not isinstance(maps, (list, tuple)):
            raise TypeError(f"maps must be a list of [N, C, H, W] tensors, got {type(maps).__name__}")
        n = len(maps)
        if not 1 <= n <= self.num_history + 1:
            raise ValueError(f"maps must hold 1 to {self.num_history + 1} frames, got {n}")
        for i, m in enumerate(maps):
            _check_map(f"maps[{i}]", m, like=maps[-1] if i != n - 1 else None)
        by_age = list(reversed(maps))  # by_age[i] = B_{-i}
        if not self.forward_only:
            for i in range(n - 1):
                by_age[i + 1] = self._run(self.backward_steps[i], by_age[i + 1], by_age[i])
        for i in range(n - 2, -1, -1):
            by_age[i] = self._run(self.forward_steps[i], by_age[i], by_age[i + 1])
        return by_age[0]

    def _run(self, step: nn.Module, query: Tensor, other: Tensor) -> Tensor:
        if self.checkpoint and torch.is_grad_enabled():
            n = self.checkpoint_chunk
            return torch.cat([checkpoint(step, q, o, use_reentrant=False)
                              for q, o in zip(query.split(n), other.split(n), strict=True)])
        return step(query, other)
