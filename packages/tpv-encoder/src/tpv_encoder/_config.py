"""Configuration of the TPV encoder and named presets."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._pretrained import BACKBONE_WEIGHTS

__all__ = ["PRESETS", "TPVEncoderConfig"]


def _positive_ints(name: str, values: tuple, n: int | None = None, *, minimum: int = 1) -> None:
    values = tuple(values)
    if n is not None and len(values) != n:
        raise ValueError(f"TPVEncoderConfig.{name} must have {n} entries, got {values!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values):
        what = "positive ints" if minimum == 1 else f"ints >= {minimum}"
        raise ValueError(f"TPVEncoderConfig.{name} must hold {what}, got {values!r}")


@dataclass(frozen=True)
class TPVEncoderConfig:
    """Everything that defines a :class:`TPVEncoder`.

    Grid: the TPV planes cover the ego-frame box ``lower``..``upper`` (metres, x forward, y left,
    z up) split into ``cells`` (NX, NY, NZ); the HW plane is [NX, NY] (missing z), ZH is
    [NZ, NX] (missing y), WZ is [NY, NZ] (missing x). Plane features sit at cell centres.

    Attributes:
        lower: (x, y, z) lower corner of the box, metres.
        upper: (x, y, z) upper corner of the box, metres.
        cells: TPV resolution (NX, NY, NZ).
        volume_cells: resolution of the output volume; None = ``cells``. A finer one is made by
            bilinear interpolation of each plane (cell centres, ``align_corners=False``) before the
            broadcast sum, which equals trilinear interpolation of the TPV-resolution volume.
        backbone: timm model name (random init unless ``backbone_weights`` or
            ``backbone_checkpoint`` is set).
        backbone_out_indices: timm feature indices used, finest first.
        backbone_checkpoint: optional local file with backbone weights (nothing is downloaded).
        backbone_weights: None or ``"imagenet"``: ImageNet-1k weights for the backbone, from the
            installed weight packages for ``efficientnet_lite0/1/2`` (no network; see
            ``tpv_encoder.PACKAGED_IMAGENET_WEIGHTS``), through timm's pretrained loading for any
            other model (needs the Hugging Face hub or its cache). Excludes ``backbone_checkpoint``.
        num_levels: FPN output levels L (>= len(backbone_out_indices); extra levels by stride 2).
        image_size: (H, W) input resolution the preset is meant for (pixels). Informative: the
            encoder accepts other sizes as long as intrinsics match the images.
        embed_dim: channels C of the FPN and the TPV planes.
        num_heads: attention heads (divides ``embed_dim``).
        num_layers: encoder layers (eq. 3 applied this many times).
        ffn_dim: hidden width of the feed-forward network.
        dropout: dropout after attention and in the FFN (training only).
        pillar_points: reference points along the missing axis of a query for the image
            cross-attention, per plane (HW, ZH, WZ).
        image_points: sampling points per head and FPN level for each plane (HW, ZH, WZ); each a
            multiple of the plane's ``pillar_points`` (points split evenly over the anchors).
        cross_view_points: sampling points per head and plane-level in the cross-view hybrid
            attention (the three planes are its three levels).
        cross_view_anchors: anchors per plane-level in the cross-view attention, spread evenly
            along the query's missing axis in the two other planes (divides cross_view_points).
        fourier_frequencies: Fourier frequencies per axis of the positional encoding.
        learned_queries: one learned embedding per plane cell (TPVFormer, released: True). False
            starts every query at zero, so that the only inputs of the first layer are the
            positional encodings and the images: a free per-cell embedding is a grid of its own
            that can memorise an average scene without reading the cameras.
        min_depth: camera depth (metres) at or below which a reference point is behind the camera.
        normalize_images: subtract ImageNet mean / divide by std (inputs are in [0, 1]).
        grad_checkpoint: recompute the backbone's stages and each TPV layer in the backward pass
            (much less activation memory, roughly one more forward pass of time).
    """

    lower: tuple[float, float, float] = (-40.0, -40.0, -1.0)
    upper: tuple[float, float, float] = (40.0, 40.0, 5.4)
    cells: tuple[int, int, int] = (100, 100, 10)
    volume_cells: tuple[int, int, int] | None = None
    backbone: str = "convnext_base"
    backbone_out_indices: tuple[int, ...] = (1, 2, 3)
    backbone_checkpoint: str | None = None
    backbone_weights: str | None = None
    num_levels: int = 4
    image_size: tuple[int, int] = (512, 1408)
    embed_dim: int = 192
    num_heads: int = 6
    num_layers: int = 4
    ffn_dim: int = 384
    dropout: float = 0.1
    pillar_points: tuple[int, int, int] = (8, 48, 48)
    image_points: tuple[int, int, int] = (16, 96, 96)
    cross_view_points: int = 12
    cross_view_anchors: int = 4
    fourier_frequencies: int = 12
    learned_queries: bool = True
    min_depth: float = 1e-5
    normalize_images: bool = True
    grad_checkpoint: bool = False

    def __post_init__(self) -> None:
        for name in ("lower", "upper"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 3 or not all(math.isfinite(x) for x in v):
                raise ValueError(f"TPVEncoderConfig.{name} must be 3 finite floats, got "
                                 f"{getattr(self, name)!r}")
            object.__setattr__(self, name, v)
        if not all(u > lo for lo, u in zip(self.lower, self.upper, strict=True)):
            raise ValueError(f"TPVEncoderConfig.upper must exceed lower, got {self.lower} .. {self.upper}")
        _positive_ints("cells", self.cells, 3)
        if self.volume_cells is not None:
            _positive_ints("volume_cells", self.volume_cells, 3)
        _positive_ints("backbone_out_indices", self.backbone_out_indices, minimum=0)   # timm: 0 = first stage
        _positive_ints("image_size", self.image_size, 2)
        if self.backbone_weights is not None and self.backbone_weights not in BACKBONE_WEIGHTS:
            raise ValueError(f"TPVEncoderConfig.backbone_weights must be None or one of {BACKBONE_WEIGHTS}, "
                             f"got {self.backbone_weights!r}")
        if self.backbone_weights is not None and self.backbone_checkpoint is not None:
            raise ValueError(f"TPVEncoderConfig: give backbone_weights ({self.backbone_weights!r}) or "
                             f"backbone_checkpoint ({self.backbone_checkpoint!r}), not both")
        _positive_ints("pillar_points", self.pillar_points, 3)
        _positive_ints("image_points", self.image_points, 3)
        for name in ("num_levels", "embed_dim", "num_heads", "num_layers", "ffn_dim", "cross_view_points",
                     "cross_view_anchors", "fourier_frequencies"):
            _positive_ints(name, (getattr(self, name),))
        if self.num_levels < len(self.backbone_out_indices):
            raise ValueError(f"TPVEncoderConfig.num_levels ({self.num_levels}) must be >= the number of "
                             f"backbone levels ({len(self.backbone_out_indices)})")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"TPVEncoderConfig.embed_dim ({self.embed_dim}) must be divisible by num_heads "
                             f"({self.num_heads})")
        if any(p % a for p, a in zip(self.image_points, self.pillar_points, strict=True)):
            raise ValueError(f"TPVEncoderConfig.image_points {self.image_points} must be multiples of "
                             f"pillar_points {self.pillar_points}")
        if self.cross_view_points % self.cross_view_anchors:
            raise ValueError(f"TPVEncoderConfig.cross_view_points ({self.cross_view_points}) must be a "
                             f"multiple of cross_view_anchors ({self.cross_view_anchors})")
        if not isinstance(self.learned_queries, bool):
            raise ValueError(f"TPVEncoderConfig.learned_queries must be a bool, got {self.learned_queries!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TPVEncoderConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.min_depth >= 0.0:
            raise ValueError(f"TPVEncoderConfig.min_depth must be >= 0, got {self.min_depth}")

    @property
    def out_cells(self) -> tuple[int, int, int]:
        """Resolution (X, Y, Z) of the output volume."""
        return tuple(self.volume_cells) if self.volume_cells is not None else tuple(self.cells)


def _presets() -> dict[str, TPVEncoderConfig]:
    nuscenes = TPVEncoderConfig()
    kitti = TPVEncoderConfig(lower=(0.0, -25.6, -2.0), upper=(51.2, 25.6, 4.4), cells=(128, 128, 16),
                             image_size=(352, 1216))
    tiny = TPVEncoderConfig(cells=(50, 50, 8), backbone="convnext_atto", num_levels=3, image_size=(96, 176),
                            embed_dim=32, num_heads=2, num_layers=1, ffn_dim=64, dropout=0.0,
                            pillar_points=(4, 8, 8), image_points=(4, 8, 8), cross_view_points=4,
                            cross_view_anchors=2, fourier_frequencies=6)
    return {"nuscenes": nuscenes, "kitti": kitti, "tiny": tiny}


#: Named configurations: ``nuscenes`` and ``kitti`` follow Let Occ Flow as released (ConvNeXt-Base,
#: 4-level FPN of 192 channels, 4 layers, 6 heads); ``tiny`` is a CPU preset for tests and smoke runs.
#: Read-only; derive variants with ``dataclasses.replace(PRESETS[name], ...)``.
PRESETS: Mapping[str, TPVEncoderConfig] = MappingProxyType(_presets())
