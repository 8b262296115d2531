"""Input validation shared by the metric functions."""

from __future__ import annotations

import torch


def tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def floating(value, name: str) -> torch.Tensor:
    tensor(value, name)
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {value.dtype}")
    return value


def finite(value: torch.Tensor, name: str) -> torch.Tensor:
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return value


def shape(value: torch.Tensor, name: str, expected: tuple, what: str) -> torch.Tensor:
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {what} = {list(expected)}, got {list(value.shape)}")
    return value


def labels(value, name: str, num_classes: int) -> torch.Tensor:
    tensor(value, name)
    if value.dtype not in (torch.uint8, torch.int16, torch.int32, torch.int64):
        raise ValueError(f"{name} must be an integer label tensor (uint8 or int), got {value.dtype}")
    if value.numel() and (int(value.min()) < 0 or int(value.max()) >= num_classes):
        raise ValueError(f"{name} labels must lie in [0, {num_classes - 1}], found "
                         f"[{int(value.min())}, {int(value.max())}]")
    return value


def same_device(**tensors: torch.Tensor) -> None:
    devices = {t.device for t in tensors.values() if t is not None}
    if len(devices) > 1:
        names = ", ".join(f"{k} on {v.device}" for k, v in tensors.items() if v is not None)
        raise ValueError(f"inputs must be on one device, got {names}")
