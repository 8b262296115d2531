"""Input validation shared by the public functions."""

from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(x: object, name: str, *, dim: int | None = None, floating: bool = False) -> Tensor:
    """Raise TypeError/ValueError unless ``x`` is a tensor of ``dim`` dims with finite values."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if dim is not None and x.dim() != dim:
        raise ValueError(f"{name}: expected {dim} dimensions, got shape {list(x.shape)}")
    if floating:
        if not x.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: expected finite values")
    return x


def check_image(x: object, name: str) -> Tensor:
    """An image [3, H, W] float in [0, 1]."""
    x = check_tensor(x, name, dim=3)
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if x.shape[0] != 3 or x.numel() == 0:
        raise ValueError(f"{name}: expected shape [3, H, W], got {list(x.shape)}")
    lo, hi = (v.item() for v in torch.aminmax(x))
    if not (lo >= 0 and hi <= 1):  # also false for NaN
        raise ValueError(f"{name}: expected finite values in [0, 1], got [{lo:.3g}, {hi:.3g}]")
    return x


def check_image_pair(a: object, b: object) -> tuple[Tensor, Tensor]:
    a = check_image(a, "image_t")
    b = check_image(b, "image_t1")
    if a.shape != b.shape:
        raise ValueError(f"image_t1: expected the shape of image_t {list(a.shape)}, got {list(b.shape)}")
    return a, b


def check_flow(x: object, name: str = "flow") -> Tensor:
    """A flow field [2, H, W] float px."""
    x = check_tensor(x, name, dim=3, floating=True)
    if x.shape[0] != 2:
        raise ValueError(f"{name}: expected shape [2, H, W], got {list(x.shape)}")
    return x


def check_mask(x: object, name: str, hw: tuple[int, int] | None = None) -> Tensor:
    """A boolean mask [H, W]."""
    x = check_tensor(x, name, dim=2)
    if x.dtype != torch.bool:
        raise ValueError(f"{name}: expected dtype torch.bool, got {x.dtype}")
    if hw is not None and tuple(x.shape) != tuple(hw):
        raise ValueError(f"{name}: expected shape {list(hw)}, got {list(x.shape)}")
    return x


def check_matrix(x: object, name: str, n: int) -> Tensor:
    """A finite [n, n] matrix."""
    x = check_tensor(x, name, dim=2, floating=True)
    if tuple(x.shape) != (n, n):
        raise ValueError(f"{name}: expected shape [{n}, {n}], got {list(x.shape)}")
    return x


def check_hw(hw: object, name: str = "image_hw") -> tuple[int, int]:
    if not isinstance(hw, (tuple, list)) or len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise ValueError(f"{name}: expected (H, W) positive ints, got {hw!r}")
    return int(hw[0]), int(hw[1])
