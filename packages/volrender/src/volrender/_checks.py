"""Input validation shared by the public ops: every check names the argument and what was expected."""

from __future__ import annotations

import math

import torch

from ._grid import GridSpec

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_grid(grid: object) -> GridSpec:
    if not isinstance(grid, GridSpec):
        raise TypeError(f"grid must be a volrender.GridSpec, got {type(grid).__name__}")
    return grid


def check_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_float_tensor(x: object, name: str, *, ndim: int | None = None, like: torch.Tensor | None = None,
                       finite: bool = True) -> torch.Tensor:
    """A float32/float64 tensor, optionally with ``ndim`` dims and the dtype/device of ``like``."""
    x = check_tensor(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if like is not None:
        if x.dtype != like.dtype:
            raise ValueError(f"{name} must have dtype {like.dtype} (like sdf), got {x.dtype}")
        if x.device != like.device:
            raise ValueError(f"{name} must be on device {like.device} (like sdf), got {x.device}")
    if finite and x.numel() > 0 and not bool(torch.isfinite(x.detach()).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def check_vertex_field(x: object, name: str, grid: GridSpec, *, channels: int | None = None,
                       batch: int | None = None, like: torch.Tensor | None = None,
                       finite: bool = True) -> torch.Tensor:
    """A vertex field ``[B, C, NX + 1, NY + 1, NZ + 1]`` matching ``grid``."""
    x = check_float_tensor(x, name, ndim=5, like=like, finite=finite)
    if tuple(x.shape[2:]) != grid.vertex_shape:
        raise ValueError(f"{name} must be a vertex grid [B, C, {', '.join(map(str, grid.vertex_shape))}] "
                         f"(grid.vertex_shape), got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s) in dim 1, got shape {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one channel, got shape {tuple(x.shape)}")
    if batch is not None and x.shape[0] != batch:
        raise ValueError(f"{name} must have batch size {batch}, got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} must have batch size >= 1, got shape {tuple(x.shape)}")
    return x


def check_rays(origins: object, directions: object, like: torch.Tensor,
               pending: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions ``[B, R, 3]`` with the batch size, dtype and device of ``like``.

    With ``pending`` (see :func:`raise_pending`) the value checks are deferred and batched.
    """
    b = like.shape[0]
    for name, x in (("origins", origins), ("directions", directions)):
        check_float_tensor(x, name, ndim=3, like=like, finite=pending is None)
        if x.shape[0] != b or x.shape[2] != 3 or x.shape[1] < 1:
            raise ValueError(f"{name} must have shape [B={b}, R>=1, 3], got {tuple(x.shape)}")
    if origins.shape != directions.shape:
        raise ValueError(f"origins and directions must have the same shape, got {tuple(origins.shape)} "
                         f"and {tuple(directions.shape)}")
    norm = torch.linalg.vector_norm(directions.detach(), dim=-1)
    bad = (norm - 1.0).abs() > 1e-3

    def fail() -> None:
        worst = norm[bad][0].item()
        raise ValueError(f"directions must be unit vectors (|d| within 1e-3 of 1); found |d| = {worst:.6g} "
                         f"({int(bad.sum())} ray(s)); normalise them, and drop zero directions")

    if pending is None:
        if bool(bad.any()):
            fail()
    else:
        pending.append(nonfinite(origins, "origins"))
        pending.append(nonfinite(directions, "directions"))
        pending.append((bad.any(), fail))
    return origins, directions


def nonfinite(x: torch.Tensor, name: str):
    """A deferred finiteness check: ``(flag, fail)`` for :func:`raise_pending`."""
    def fail() -> None:
        raise ValueError(f"{name} must be finite (no NaN or inf)")

    return (~torch.isfinite(x.detach()).all(), fail)


def raise_pending(pending: list) -> None:
    """Evaluate deferred value checks with a single device -> host copy; raise the first failure."""
    if not pending:
        return
    flags = torch.stack([f.reshape(()).to(torch.bool) for f, _ in pending]).tolist()
    for bad, (_, fail) in zip(flags, pending, strict=True):
        if bad:
            fail()


def check_distance(x: object, name: str, default: float, shape: tuple[int, int],
                   like: torch.Tensor) -> torch.Tensor:
    """``None`` (-> ``default``), a float, or a tensor broadcastable to ``[B, R]``; >= 0, not NaN."""
    if x is None:
        x = default
    if isinstance(x, bool):
        raise TypeError(f"{name} must be a float or a tensor, got bool")
    if isinstance(x, (int, float)):
        if math.isnan(x) or x < 0:
            raise ValueError(f"{name} must be >= 0, got {x}")
        return torch.full(shape, float(x), dtype=like.dtype, device=like.device)
    x = check_float_tensor(x, name, finite=False)
    if x.device != like.device:
        raise ValueError(f"{name} must be on device {like.device}, got {x.device}")
    try:
        x = torch.broadcast_to(x.detach().to(like.dtype), shape)
    except RuntimeError:
        raise ValueError(f"{name} must broadcast to [B, R] = {list(shape)}, "
                         f"got shape {tuple(x.shape)}") from None
    if bool(torch.isnan(x).any()) or bool((x < 0).any()):
        raise ValueError(f"{name} must be >= 0 and not NaN")
    return x.contiguous()


def check_inv_s(inv_s: object, like: torch.Tensor, pending: list | None = None) -> torch.Tensor:
    """NeuS sharpness: a positive finite float or a one-element tensor (differentiable) -> 0-d tensor."""
    if isinstance(inv_s, bool):
        raise TypeError("inv_s must be a float or a one-element tensor, got bool")
    if isinstance(inv_s, (int, float)):
        if not math.isfinite(inv_s) or inv_s <= 0:
            raise ValueError(f"inv_s must be positive and finite, got {inv_s}")
        return torch.tensor(float(inv_s), dtype=like.dtype, device=like.device)
    if not isinstance(inv_s, torch.Tensor):
        raise TypeError(f"inv_s must be a float or a one-element tensor, got {type(inv_s).__name__}")
    if inv_s.numel() != 1:
        raise ValueError(f"inv_s must have exactly one element, got shape {tuple(inv_s.shape)}")
    if not inv_s.is_floating_point():
        raise ValueError(f"inv_s must be a floating-point tensor, got {inv_s.dtype}")
    if inv_s.device != like.device:
        raise ValueError(f"inv_s must be on device {like.device} (like sdf), got {inv_s.device}")
    v = inv_s.detach().reshape(())

    def fail() -> None:
        raise ValueError(f"inv_s must be positive and finite, got {float(v)}")

    bad = ~(torch.isfinite(v) & (v > 0))
    if pending is None:
        if bool(bad):
            fail()
    else:
        pending.append((bad, fail))
    return inv_s.reshape(()).to(like.dtype)


def check_int(x: object, name: str, minimum: int) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    if x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    return x


def check_backend(backend: object) -> str:
    if backend not in ("warp", "torch"):
        raise ValueError(f"backend must be 'warp' or 'torch', got {backend!r}")
    return backend


def check_threshold(x: object, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(x).__name__}")
    if not 0.0 <= x < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {x}")
    return float(x)
