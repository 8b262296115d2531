"""Optical flow estimators behind one interface, and forward-backward consistency."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_flow, check_image_pair, check_tensor

__all__ = [
    "DISFlow",
    "FlowEstimator",
    "RAFTFlow",
    "ScaledFlow",
    "TorchFlowEstimator",
    "forward_backward_valid",
    "load_weights",
    "pixel_grid",
    "sample_bilinear",
]

# UnFlow (Meister et al., AAAI 2018) occlusion test: a pixel is consistent when
# |f_fw(x) + f_bw(x + f_fw(x))|^2 < FB_ALPHA * (|f_fw|^2 + |f_bw(x + f_fw)|^2) + FB_BETA (px^2).
FB_ALPHA = 0.01
FB_BETA = 0.5


@runtime_checkable
class FlowEstimator(Protocol):
    """Anything that estimates dense optical flow between two images.

    ``estimate(image_t [3, H, W] float in [0, 1], image_t1 [3, H, W]) -> (flow [2, H, W] float32
    px, valid [H, W] bool)``: ``flow[:, y, x]`` is the (dx, dy) displacement of pixel (x, y) of
    ``image_t`` into ``image_t1``; ``valid`` marks pixels whose flow is trusted (forward-
    backward consistent and landing inside the image). ``name`` and ``settings()`` go into
    the cache manifest.
    """

    name: str

    def estimate(self, image_t: Tensor, image_t1: Tensor) -> tuple[Tensor, Tensor]: ...

    def settings(self) -> dict[str, Any]: ...


def pixel_grid(h: int, w: int, device: torch.device | str = "cpu") -> Tensor:
    """Pixel coordinates [2, H, W] float32: ``grid[0]`` = x (column), ``grid[1]`` = y (row)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys])


def sample_bilinear(field: Tensor, points: Tensor) -> Tensor:
    """Bilinear lookup of a field at sub-pixel positions (zeros outside the image).

    Args:
        field: [C, H, W] values on the pixel grid.
        points: [2, h, w] pixel coordinates (x, y) to sample at.

    Returns:
        [C, h, w] sampled values.
    """
    check_tensor(field, "field", dim=3)
    check_flow(points, "points")
    h, w = field.shape[-2:]
    gx = points[0] * (2.0 / max(w - 1, 1)) - 1.0
    gy = points[1] * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)[None].to(torch.float32)
    out = F.grid_sample(field[None].to(torch.float32), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    return out[0]


def _inside(points: Tensor, h: int, w: int) -> Tensor:
    return (points[0] >= 0) & (points[0] <= w - 1) & (points[1] >= 0) & (points[1] <= h - 1)


def forward_backward_valid(flow_fw: Tensor, flow_bw: Tensor, alpha: float = FB_ALPHA,
                           beta: float = FB_BETA) -> Tensor:
    """Forward-backward consistency (UnFlow's test) and landing inside the image.

    A pixel x is valid when x + f_fw(x) lies inside the image and
    ``|f_fw(x) + f_bw(x + f_fw(x))|^2 < alpha * (|f_fw(x)|^2 + |f_bw(x + f_fw(x))|^2) + beta``.

    Args:
        flow_fw: [2, H, W] px, image t -> t+1.
        flow_bw: [2, H, W] px, image t+1 -> t.
        alpha: relative tolerance (default 0.01).
        beta: absolute tolerance, px^2 (default 0.5).

    Returns:
        [H, W] bool.
    """
    check_flow(flow_fw, "flow_fw")
    check_flow(flow_bw, "flow_bw")
    if flow_fw.shape != flow_bw.shape:
        raise ValueError(f"flow_bw: expected shape {list(flow_fw.shape)}, got {list(flow_bw.shape)}")
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha, beta: expected >= 0, got {alpha}, {beta}")
    h, w = flow_fw.shape[-2:]
    target = pixel_grid(h, w, flow_fw.device) + flow_fw
    bw = sample_bilinear(flow_bw, target)
    diff = (flow_fw + bw).square().sum(0)
    bound = alpha * (flow_fw.square().sum(0) + bw.square().sum(0)) + beta
    return (diff < bound) & _inside(target, h, w)


class _PairwiseEstimator(ABC):
    """Base of the estimators here: raw flow both ways, then the forward-backward test."""

    name: str = "pairwise"

    def __init__(self, *, fb_check: bool = True, fb_alpha: float = FB_ALPHA, fb_beta: float = FB_BETA):
        if fb_alpha < 0 or fb_beta < 0:
            raise ValueError(f"fb_alpha, fb_beta: expected >= 0, got {fb_alpha}, {fb_beta}")
        self.fb_check = bool(fb_check)
        self.fb_alpha = float(fb_alpha)
        self.fb_beta = float(fb_beta)

    @abstractmethod
    def flow(self, image_t: Tensor, image_t1: Tensor) -> Tensor:
        """Raw flow [2, H, W] float32 px from ``image_t`` to ``image_t1`` (no validity)."""

    def estimate(self, image_t: Tensor, image_t1: Tensor) -> tuple[Tensor, Tensor]:
        """Flow t -> t+1 and its validity.

        Args:
            image_t: [3, H, W] float in [0, 1].
            image_t1: [3, H, W] float in [0, 1].

        Returns:
            flow [2, H, W] float32 px on the CPU, valid [H, W] bool (forward-backward
            consistent when ``fb_check``, and landing inside the image).
        """
        image_t, image_t1 = check_image_pair(image_t, image_t1)
        fw = self.flow(image_t, image_t1).float().cpu()
        h, w = fw.shape[-2:]
        if self.fb_check:
            bw = self.flow(image_t1, image_t).float().cpu()
            valid = forward_backward_valid(fw, bw, self.fb_alpha, self.fb_beta)
        else:
            valid = _inside(pixel_grid(h, w) + fw, h, w)
        return fw, valid

    def settings(self) -> dict[str, Any]:
        return {"fb_check": self.fb_check, "fb_alpha": self.fb_alpha, "fb_beta": self.fb_beta}


_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _to_gray_u8(image: Tensor) -> np.ndarray:
    rgb = image.detach().cpu().float().numpy().transpose(1, 2, 0)
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)  # float32 in [0, 1]
    return (gray * 255.0 + 0.5).astype(np.uint8)


class DISFlow(_PairwiseEstimator):
    """OpenCV's Dense Inverse Search optical flow (Kroeger et al., ECCV 2016); no weights.

    Args:
        preset: ``"ultrafast"``, ``"fast"`` or ``"medium"`` (OpenCV's presets).
        fb_check: compute the backward flow too and mark inconsistent pixels invalid.
        fb_alpha, fb_beta: tolerances of :func:`forward_backward_valid`.
        threads: OpenCV threads for this process (None leaves OpenCV's setting).
    """

    name = "opencv-dis"

    def __init__(self, preset: str = "medium", *, fb_check: bool = True, fb_alpha: float = FB_ALPHA,
                 fb_beta: float = FB_BETA, threads: int | None = None):
        super().__init__(fb_check=fb_check, fb_alpha=fb_alpha, fb_beta=fb_beta)
        if preset not in _DIS_PRESETS:
            raise ValueError(f"preset: expected one of {sorted(_DIS_PRESETS)}, got {preset!r}")
        self.preset = preset
        self.threads = threads
        self._dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])

    def flow(self, image_t: Tensor, image_t1: Tensor) -> Tensor:
        if self.threads is not None:
            cv2.setNumThreads(int(self.threads))
        out = self._dis.calc(_to_gray_u8(image_t), _to_gray_u8(image_t1), None)
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).float()

    def settings(self) -> dict[str, Any]:
        return {"preset": self.preset, **super().settings()}

    def versions(self) -> dict[str, str]:
        return {"opencv": cv2.__version__}


def _load_state_dict(path: Path) -> Mapping[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file not found: {path} (no weights are downloaded; pass a local file)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (name -> tensor) or a dict holding one under "
                         f"'state_dict'/'model', got {type(obj).__name__}")
    # checkpoints saved from DataParallel prefix every name with "module."
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_weights(module: nn.Module, weights_path: str | os.PathLike) -> nn.Module:
    """Load a local state dict strictly into ``module``; errors name the file and the mismatch."""
    path = Path(weights_path)
    state = _load_state_dict(path)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        def head(names):
            return ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")
        parts = []
        if missing:
            parts.append(f"missing {head(missing)}")
        if unexpected:
            parts.append(f"unexpected {head(unexpected)}")
        if wrong:
            parts.append(f"wrong shape {head(wrong)}")
        raise ValueError(f"{path}: weights do not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)
    return module


class TorchFlowEstimator(_PairwiseEstimator):
    """A PyTorch flow network with weights from a local file: the place to plug in UniMatch etc.

    Nothing is downloaded. Give a factory that builds the network (from your own installation
    of its code), the weights file, and a function that runs it::

        def run_unimatch(model, img0, img1):          # img*: [1, 3, H, W] float in [0, 1]
            out = model(img0 * 255, img1 * 255, attn_type="swin", attn_splits_list=[2, 8],
                        corr_radius_list=[-1, 4], prop_radius_list=[-1, 1], num_reg_refine=6,
                        task="flow")
            return out["flow_preds"][-1]               # [1, 2, H, W] px

        est = TorchFlowEstimator("unimatch", lambda: UniMatch(num_scales=2, upsampler_type="...",
                                 reg_refine=True), "gmflow-scale2-regrefine6-kitti.pth",
                                 run_unimatch, pad_to=32)

    Args:
        name: estimator name written to the manifest.
        model_factory: builds the network with random weights.
        weights_path: local state-dict file (a dict under ``"state_dict"``/``"model"`` and a
            ``"module."`` prefix are accepted); loading is strict.
        forward: ``forward(model, img0 [1, 3, H', W'], img1) -> flow [1, 2, H', W']`` px with
            images in [0, 1] padded to multiples of ``pad_to``.
        pad_to: pad images (replicate) so H and W are multiples of this; the flow is cropped back.
        min_size: pad images to at least this height and width (networks with deep pyramids).
        device: where the network runs.
        fb_check, fb_alpha, fb_beta: see :func:`forward_backward_valid`.
        extra_settings: more settings for the manifest.

    Raises:
        FileNotFoundError: naming the path when the weights file is absent.
        ValueError: naming the path when the file is not a state dict or does not fit the model.
    """

    def __init__(self, name: str, model_factory: Callable[[], nn.Module], weights_path: str | os.PathLike,
                 forward: Callable[[nn.Module, Tensor, Tensor], Tensor], *, pad_to: int = 8,
                 min_size: int = 0, device: str | torch.device = "cpu", fb_check: bool = True,
                 fb_alpha: float = FB_ALPHA,
                 fb_beta: float = FB_BETA, extra_settings: Mapping[str, Any] | None = None):
        super().__init__(fb_check=fb_check, fb_alpha=fb_alpha, fb_beta=fb_beta)
        if pad_to < 1:
            raise ValueError(f"pad_to: expected >= 1, got {pad_to}")
        self.name = name
        self.weights_path = Path(weights_path)
        self.pad_to = int(pad_to)
        self.min_size = int(min_size)
        self.device = torch.device(device)
        self._forward = forward
        self._extra = dict(extra_settings or {})
        _load_state_dict(self.weights_path)  # fail on a missing or unreadable file before building
        model = model_factory()
        load_weights(model, self.weights_path)
        self.model = model.eval().to(self.device)

    @torch.inference_mode()
    def flow(self, image_t: Tensor, image_t1: Tensor) -> Tensor:
        h, w = image_t.shape[-2:]
        ph = max(self.min_size - h, 0)
        pw = max(self.min_size - w, 0)
        ph += (-(h + ph)) % self.pad_to
        pw += (-(w + pw)) % self.pad_to
        pair = torch.stack([image_t, image_t1]).float().to(self.device)
        if ph or pw:
            pair = F.pad(pair, (0, pw, 0, ph), mode="replicate")
        out = self._forward(self.model, pair[0:1], pair[1:2])
        if out.dim() != 4 or out.shape[:2] != (1, 2):
            raise ValueError(f"{self.name}: forward must return [1, 2, H, W] flow, got {list(out.shape)}")
        return out[0, :, :h, :w].float().cpu()

    def settings(self) -> dict[str, Any]:
        return {"weights": self.weights_path.name, "pad_to": self.pad_to, **self._extra, **super().settings()}

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}


def _run_raft(num_flow_updates: int) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    def run(model: nn.Module, img0: Tensor, img1: Tensor) -> Tensor:
        # torchvision's RAFT expects images normalised to [-1, 1]
        return model(img0 * 2 - 1, img1 * 2 - 1, num_flow_updates=num_flow_updates)[-1]
    return run


class RAFTFlow(TorchFlowEstimator):
    """torchvision's RAFT (Teed and Deng, ECCV 2020) with weights from a local file only.

    Args:
        weights_path: a state dict of ``torchvision.models.optical_flow.raft_small`` or
            ``raft_large`` (e.g. torchvision's ``Raft_Small_Weights.C_T_V2`` file, copied by hand).
        arch: ``"raft_small"`` or ``"raft_large"``.
        num_flow_updates: recurrent refinement iterations (torchvision's default 12).
        device: where the network runs.
        fb_check, fb_alpha, fb_beta: see :func:`forward_backward_valid`.

    Raises:
        FileNotFoundError: naming the path when the file is absent.
        ValueError: naming the path when it does not fit the architecture.
    """

    def __init__(self, weights_path: str | os.PathLike, arch: str = "raft_small", *,
                 num_flow_updates: int = 12, device: str | torch.device = "cpu", fb_check: bool = True,
                 fb_alpha: float = FB_ALPHA, fb_beta: float = FB_BETA):
        if not Path(weights_path).is_file():  # before the slow torchvision import
            raise FileNotFoundError(
                f"weights file not found: {weights_path} (no weights are downloaded; pass a local file)"
            )
        from torchvision.models import optical_flow

        factories = {"raft_small": optical_flow.raft_small, "raft_large": optical_flow.raft_large}
        if arch not in factories:
            raise ValueError(f"arch: expected one of {sorted(factories)}, got {arch!r}")
        if num_flow_updates < 1:
            raise ValueError(f"num_flow_updates: expected >= 1, got {num_flow_updates}")
        self.arch = arch
        self.num_flow_updates = int(num_flow_updates)
        super().__init__(f"torchvision-{arch}", lambda: factories[arch](weights=None, progress=False),
                         weights_path, _run_raft(self.num_flow_updates), pad_to=8, min_size=128,
                         device=device,
                         fb_check=fb_check, fb_alpha=fb_alpha, fb_beta=fb_beta,
                         extra_settings={"arch": arch, "num_flow_updates": self.num_flow_updates})

    def versions(self) -> dict[str, str]:
        import torchvision

        return {"torch": torch.__version__, "torchvision": torchvision.__version__}


class ScaledFlow:
    """Run another estimator on resized images and bring its flow back to the original size.

    Flow at half resolution costs about a quarter of the time (measured for DIS medium with the
    forward-backward test at 900 x 1600: 1.06 s per pair at full size, 0.22 s at 450 x 800); the
    vectors are multiplied by 1 / scale and upsampled bilinearly, validity by nearest neighbour.

    Args:
        estimator: the :class:`FlowEstimator` to run.
        scale: resize factor in (0, 1].
    """

    def __init__(self, estimator: FlowEstimator, scale: float):
        if not isinstance(estimator, FlowEstimator):
            raise TypeError(f"estimator: expected a FlowEstimator, got {type(estimator).__name__}")
        if not 0 < scale <= 1:
            raise ValueError(f"scale: expected in (0, 1], got {scale}")
        self.estimator = estimator
        self.scale = float(scale)
        self.name = estimator.name

    def estimate(self, image_t: Tensor, image_t1: Tensor) -> tuple[Tensor, Tensor]:
        """Flow [2, H, W] px and valid [H, W] at the size of the inputs (see :class:`FlowEstimator`)."""
        image_t, image_t1 = check_image_pair(image_t, image_t1)
        if self.scale == 1.0:
            return self.estimator.estimate(image_t, image_t1)
        h, w = image_t.shape[-2:]
        sh, sw = max(1, round(h * self.scale)), max(1, round(w * self.scale))

        def small(img: Tensor) -> Tensor:
            a = img.detach().cpu().float().numpy().transpose(1, 2, 0)
            out = cv2.resize(a, (sw, sh), interpolation=cv2.INTER_AREA)
            return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).clamp(0, 1)

        flow, valid = self.estimator.estimate(small(image_t), small(image_t1))
        flow = F.interpolate(flow[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        flow = flow * torch.tensor([w / sw, h / sh], dtype=flow.dtype).view(2, 1, 1)
        valid = F.interpolate(valid[None, None].float(), size=(h, w), mode="nearest")[0, 0] > 0.5
        target = pixel_grid(h, w) + flow
        return flow, valid & _inside(target, h, w)

    def settings(self) -> dict[str, Any]:
        return {"scale": self.scale, **self.estimator.settings()}
