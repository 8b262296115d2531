"""AdamW with per-module learning-rate multipliers and a warm-up + multi-step schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and its schedule for one stage (released values as defaults, REFERENCE.md).

    Attributes:
        lr: base learning rate.
        weight_decay: AdamW weight decay (not applied to biases, norms and 1-D parameters).
        betas: AdamW betas.
        grad_clip: max global gradient norm (0 = no clipping).
        lr_mult: learning-rate multiplier per parameter-name prefix; the longest matching
            prefix wins, unmatched parameters use 1. Stage 1 of the paper: backbone x0.1;
            stage 2: encoder/neck x0.25, temporal modules x0.4.
        warmup_steps: linear warm-up from ``warmup_ratio * lr`` over this many steps.
        warmup_ratio: starting fraction of the learning rate.
        milestones: fractions of the stage's steps at which the rate is multiplied by ``gamma``.
        gamma: decay factor at each milestone.
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 35.0
    lr_mult: Mapping[str, float] = field(default_factory=lambda: {"encoder.backbone": 0.1})
    warmup_steps: int = 1000
    warmup_ratio: float = 1.0 / 3.0
    milestones: tuple[float, ...] = (0.8,)
    gamma: float = 0.2

    def __post_init__(self) -> None:
        o = "OptimConfig"
        for name in ("lr", "weight_decay", "grad_clip", "gamma"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{o}.{name} must be a finite number >= 0, got {v!r}")
        if self.lr <= 0:
            raise ValueError(f"{o}.lr must be positive, got {self.lr}")
        steps = self.warmup_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"{o}.warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if not 0 < self.warmup_ratio <= 1:
            raise ValueError(f"{o}.warmup_ratio must lie in (0, 1], got {self.warmup_ratio}")
        if any(not 0 < m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"{o}.milestones must be increasing fractions in (0, 1), got {self.milestones}")
        for prefix, mult in dict(self.lr_mult).items():
            if not isinstance(prefix, str) or not isinstance(mult, (int, float)) or mult < 0:
                raise ValueError(f"{o}.lr_mult must map name prefixes to multipliers >= 0, got "
                                 f"{prefix!r}: {mult!r}")


def _multiplier(name: str, lr_mult: Mapping[str, float]) -> float:
    best, mult = -1, 1.0
    for prefix, value in lr_mult.items():
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
            best, mult = len(prefix), float(value)
    return mult


def param_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """Trainable parameters grouped by (lr multiplier, weight decay on/off).

    Frozen parameters (``requires_grad=False``) and parameters whose multiplier is 0 are left
    out. Each group carries ``lr`` (already multiplied) and ``initial_lr``.
    """
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    names: dict[tuple[float, bool], list[str]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = _multiplier(name, config.lr_mult)
        if mult == 0:
            continue
        decay = p.ndim > 1 and not name.endswith(".bias")
        key = (mult, decay)
        groups.setdefault(key, []).append(p)
        names.setdefault(key, []).append(name)
    if not groups:
        raise ValueError("param_groups: the model has no trainable parameter")
    return [{"params": ps, "lr": config.lr * mult, "initial_lr": config.lr * mult,
             "weight_decay": config.weight_decay if decay else 0.0, "lr_mult": mult,
             "names": names[(mult, decay)]}
            for (mult, decay), ps in sorted(groups.items(), key=lambda kv: kv[0])]


def freeze_zero_lr(model: nn.Module, config: OptimConfig) -> list[str]:
    """Turn off ``requires_grad`` of the parameters whose ``lr_mult`` multiplier is 0; returns their names.

    :func:`param_groups` leaves them out of the optimiser, so nothing would ever zero their
    gradients: left trainable they would accumulate a gradient across steps that still counts in
    the global norm of gradient clipping (and so scales every other parameter's step).
    """
    frozen = []
    for name, p in model.named_parameters():
        if p.requires_grad and _multiplier(name, config.lr_mult) == 0:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def make_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` of ``model``."""
    groups = param_groups(model, config)
    for g in groups:
        g.pop("names")
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas),
                             weight_decay=config.weight_decay)


def lr_factor(step: int, total_steps: int, config: OptimConfig) -> float:
    """Learning-rate factor at optimiser step ``step`` (0-based) of a stage of ``total_steps``.

    Linear warm-up from ``warmup_ratio`` to 1 over ``warmup_steps``, then ``gamma`` per milestone
    passed (milestone ``m`` is passed at step ``floor(m * total_steps)``).
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    factor = 1.0
    if config.warmup_steps and step < config.warmup_steps:
        factor = config.warmup_ratio + (1 - config.warmup_ratio) * step / config.warmup_steps
    passed = sum(step >= math.floor(m * total_steps) for m in config.milestones)
    return factor * config.gamma ** passed


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                   config: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor` to every group (stepped once per optimiser step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, config))
