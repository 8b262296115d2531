"""Image backbone (any timm model with ``features_only``) and a feature pyramid network."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._pretrained import BACKBONE_WEIGHTS, PACKAGED_IMAGENET_WEIGHTS, imagenet_state_dict, timm_pretrained

__all__ = ["FPN", "ImageBackbone", "load_backbone_checkpoint"]

_WRAPPER_KEYS = ("state_dict", "model", "module", "backbone")
_PREFIXES = ("module.", "backbone.", "model.", "encoder.")


class FPN(nn.Module):
    """Feature pyramid network: lateral 1x1 convs, top-down nearest upsampling and 3x3 smoothing.

    Levels beyond the backbone's are made by stride-2 3x3 convolutions on the coarsest output
    (with a ReLU before every extra conv after the first).

    Args:
        in_channels: channels of each backbone level, finest first.
        out_channels: channels C of every output level.
        num_outs: number of output levels L (``>= len(in_channels)``).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_outs: int) -> None:
        super().__init__()
        if len(in_channels) < 1 or num_outs < len(in_channels):
            raise ValueError(f"num_outs ({num_outs}) must be >= the number of backbone levels "
                             f"({len(in_channels)})")
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
                                   for _ in range(num_outs - len(in_channels)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """Map backbone levels [M, C_i, H_i, W_i] (finest first) to L levels [M, C, H_l, W_l]."""
        lat = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        outs = [conv(x) for conv, x in zip(self.smooth, lat, strict=True)]
        for i, conv in enumerate(self.extra):
            outs.append(conv(outs[-1] if i == 0 else F.relu(outs[-1])))
        return outs


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"backbone checkpoint {path}: expected a state dict of tensors (optionally under "
                         f"one of {_WRAPPER_KEYS}), got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


def load_backbone_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load local weights into a timm ``features_only`` model, strictly.

    The file may hold the state dict of the full timm model of the same architecture (classifier
    keys are ignored) or of the features-only model, optionally nested under ``state_dict`` /
    ``model`` and prefixed with ``module.`` / ``backbone.``; ``.safetensors`` files are read with
    safetensors, anything else with ``torch.load(weights_only=True)``. Features-only models name
    modules ``stages_0`` where the full model has ``stages.0``; both spellings are matched.
    BatchNorm ``num_batches_tracked`` counters may be absent (the model's own are kept); every
    other weight and buffer of the model must be in the file.

    Args:
        model: the features-only backbone to fill in place.
        path: checkpoint file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a state dict, a backbone weight is missing from it, or a
            shape differs (the message lists the first offending keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: object = load_file(str(path))
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle / zip errors: name the file
            raise ValueError(f"backbone checkpoint {path} could not be read: {exc}") from exc
    ckpt = _unwrap_state_dict(raw, path)
    model.load_state_dict(_select_for(model, ckpt, f"backbone checkpoint {path}"), strict=True)


def _full_model_names(key: str) -> list[str]:
    """Names a features-only key may have in a full-model state dict (``stages_0.x`` -> ``stages.0.x``)."""
    head, sep, rest = key.partition(".")
    names = [key, re.sub(r"_(\d+)$", r".\1", head) + sep + rest, head.replace("_", ".") + sep + rest]
    return list(dict.fromkeys(names))


def _select_for(model: nn.Module, source: dict[str, Tensor], what: str) -> dict[str, Tensor]:
    """The complete state dict of ``model`` taken from ``source`` (full or features-only names).

    Keys of ``source`` the model lacks (classifier, head) are ignored. A BatchNorm
    ``num_batches_tracked`` counter absent from ``source`` keeps the model's value; every other
    model key must be present with the model's shape.

    Raises:
        ValueError: a key is missing or a shape differs (the message lists the first ones).
    """
    new_state, missing, mismatched = {}, [], []
    for key, ref in model.state_dict().items():
        found = next((c for c in _full_model_names(key) if c in source), None)
        if found is None:
            if key.rsplit(".", 1)[-1] == "num_batches_tracked":
                new_state[key] = ref  # a step counter, unused by the forward pass: not required
            else:
                missing.append(key)
        elif tuple(source[found].shape) != tuple(ref.shape):
            mismatched.append(f"{key}: checkpoint {tuple(source[found].shape)} vs model {tuple(ref.shape)}")
        else:
            new_state[key] = source[found].to(ref.dtype)
    if missing or mismatched:
        raise ValueError(
            f"{what} does not fit the model: {len(missing)} missing keys "
            f"{missing[:5]}, {len(mismatched)} shape mismatches {mismatched[:5]}")
    return new_state


class ImageBackbone(nn.Module):
    """timm backbone (``features_only``) followed by an :class:`FPN`.

    The backbone starts from random init, from ImageNet weights (``weights="imagenet"``) or from
    a local file (``checkpoint``).

    Args:
        name: timm model name, e.g. ``"convnext_base"``, ``"convnext_atto"`` or
            ``"efficientnet_lite0"``.
        out_indices: backbone feature levels to use (timm indices), finest first.
        out_channels: FPN channels C.
        num_levels: FPN output levels L (extra levels by stride-2 convs).
        checkpoint: optional local file with pretrained weights (see
            :func:`load_backbone_checkpoint`); nothing is downloaded.
        grad_checkpoint: recompute the backbone's stages in the backward pass (timm's stage-level
            gradient checkpointing): much less activation memory, one more backbone forward.
        weights: None (random init, or ``checkpoint``) or ``"imagenet"``: ImageNet-1k weights,
            read without network from the installed weight package for the models of
            :data:`PACKAGED_IMAGENET_WEIGHTS` (``efficientnet_lite0/1/2``; see
            :func:`imagenet_state_dict`), through timm's own pretrained loading (Hugging Face
            hub or its cache) for any other model. Excludes ``checkpoint``.

    Raises:
        ValueError: ``name`` is not a timm model with ``features_only``, ``weights`` is not one of
            None / ``"imagenet"``, both ``weights`` and ``checkpoint`` are given, or timm could not
            load ImageNet weights for a model without packaged ones.
    """

    def __init__(self, name: str, out_indices: Sequence[int], out_channels: int, num_levels: int,
                 checkpoint: str | Path | None = None, grad_checkpoint: bool = False,
                 weights: str | None = None) -> None:
        super().__init__()
        import timm  # imported here: importing timm takes seconds, and ms_deform_attn users need none of it

        if weights is not None and weights not in BACKBONE_WEIGHTS:
            raise ValueError(f"weights must be None or one of {BACKBONE_WEIGHTS}, got {weights!r}")
        if weights is not None and checkpoint is not None:
            raise ValueError(f"give either weights ({weights!r}) or checkpoint ({str(checkpoint)!r}), "
                             f"not both")
        kwargs = {"features_only": True, "out_indices": tuple(out_indices)}
        try:
            self.body = timm.create_model(name, pretrained=False, **kwargs)
        except RuntimeError as exc:  # timm: unknown model
            raise ValueError(f"backbone {name!r} is not a timm model with features_only support: {exc}") \
                from exc
        if weights == "imagenet" and name in PACKAGED_IMAGENET_WEIGHTS:
            self.body.load_state_dict(_select_for(self.body, imagenet_state_dict(name),
                                                  f"ImageNet weights of {name}"), strict=True)
        elif weights == "imagenet":
            self.body = timm_pretrained(name, **kwargs)
        if checkpoint is not None:
            load_backbone_checkpoint(self.body, checkpoint)
        if grad_checkpoint:
            self.body.set_grad_checkpointing(True)
        self.strides = tuple(self.body.feature_info.reduction())
        self.fpn = FPN(self.body.feature_info.channels(), out_channels, num_levels)

    def forward(self, images: Tensor) -> list[Tensor]:
        """Map images [M, 3, H, W] to L feature maps [M, C, H_l, W_l], finest first."""
        return self.fpn(self.body(images))
