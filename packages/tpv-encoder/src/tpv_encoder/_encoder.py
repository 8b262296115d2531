"""TPV encoder (TPVFormer-style, Let Occ Flow eq. 2-3): images -> three planes -> volume."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ._backbone import ImageBackbone
from ._config import TPVEncoderConfig
from ._deform_attn import MultiScaleDeformableAttention
from ._geometry import check_calibration, project_to_cameras

__all__ = ["TPVEncoder", "TPVPlanes", "fourier_encode", "tpv_to_volume"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class TPVPlanes(NamedTuple):
    """The three tri-perspective-view planes of a batch.

    Attributes:
        hw: [B, C, NX, NY] plane over x, y (missing z).
        zh: [B, C, NZ, NX] plane over z, x (missing y).
        wz: [B, C, NY, NZ] plane over y, z (missing x).
    """

    hw: Tensor
    zh: Tensor
    wz: Tensor


def tpv_to_volume(hw: Tensor, zh: Tensor, wz: Tensor,
                  out_cells: tuple[int, int, int] | None = None) -> Tensor:
    """Broadcast each plane along its missing axis and sum them (TPVFormer aggregation).

    ``volume[b, c, i, j, k] = hw[b, c, i, j] + zh[b, c, k, i] + wz[b, c, j, k]``. With ``out_cells``
    each plane is first resized bilinearly (cell centres, ``align_corners=False``) to the finer
    resolution, which equals trilinear interpolation of the TPV-resolution volume.

    Args:
        hw: [B, C, NX, NY]. zh: [B, C, NZ, NX]. wz: [B, C, NY, NZ].
        out_cells: optional output (X, Y, Z); None keeps (NX, NY, NZ).

    Returns:
        [B, C, X, Y, Z] feature volume.
    """
    for name, t in (("hw", hw), ("zh", zh), ("wz", wz)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be [B, C, ., .], got shape {tuple(t.shape)}")
    B, C, NX, NY = hw.shape
    NZ = zh.shape[2]
    if tuple(zh.shape) != (B, C, NZ, NX) or tuple(wz.shape) != (B, C, NY, NZ):
        raise ValueError(f"planes do not fit: hw {tuple(hw.shape)} = [B, C, NX, NY], zh {tuple(zh.shape)} "
                         f"must be [B, C, NZ, NX], wz {tuple(wz.shape)} must be [B, C, NY, NZ]")
    if out_cells is not None:
        X, Y, Z = (int(v) for v in out_cells)
        if min(X, Y, Z) < 1:
            raise ValueError(f"out_cells must be positive, got {out_cells}")
        if (X, Y, Z) != (NX, NY, NZ):
            hw = F.interpolate(hw, size=(X, Y), mode="bilinear", align_corners=False)
            zh = F.interpolate(zh, size=(Z, X), mode="bilinear", align_corners=False)
            wz = F.interpolate(wz, size=(Y, Z), mode="bilinear", align_corners=False)
    return hw[:, :, :, :, None] + zh.permute(0, 1, 3, 2)[:, :, :, None, :] + wz[:, :, None, :, :]


def fourier_encode(coords: Tensor, num_frequencies: int, cells: tuple[int, ...]) -> Tensor:
    """Fourier features of normalised coordinates, per axis.

    Frequencies are geometric from 0.5 cycles over the axis to its Nyquist frequency
    (``cells / 2`` cycles), ``num_frequencies`` of them per axis.

    Args:
        coords: [..., D] coordinates in [0, 1] (D axes).
        num_frequencies: F frequencies per axis.
        cells: D axis resolutions (sets each axis' highest frequency).

    Returns:
        [..., D * 2 * F] (sin, cos) features.
    """
    if not isinstance(coords, Tensor):
        raise TypeError(f"coords must be a torch.Tensor, got {type(coords).__name__}")
    if not coords.is_floating_point() or coords.dim() < 1 or coords.shape[-1] != len(cells):
        raise ValueError(f"coords must be a floating tensor [..., {len(cells)}] (one column per entry of "
                         f"cells={tuple(cells)}), got {coords.dtype} {tuple(coords.shape)}")
    if not isinstance(num_frequencies, int) or num_frequencies < 1:
        raise ValueError(f"num_frequencies must be a positive int, got {num_frequencies!r}")
    feats = []
    for d, n in enumerate(cells):
        top = max(n / 2.0, 0.5)
        if num_frequencies == 1:
            freqs = torch.tensor([0.5], dtype=coords.dtype, device=coords.device)
        else:
            freqs = 0.5 * (2.0 * top) ** torch.linspace(0.0, 1.0, num_frequencies, dtype=coords.dtype,
                                                        device=coords.device)
        ang = 2.0 * math.pi * coords[..., d:d + 1] * freqs
        feats += [ang.sin(), ang.cos()]
    return torch.cat(feats, -1)


def _centres(n: int) -> Tensor:
    return (torch.arange(n, dtype=torch.float32) + 0.5) / n


class _TPVLayer(nn.Module):
    """Cross-view hybrid attention, image cross-attention, FFN; post-norm residual blocks."""

    def __init__(self, cfg: TPVEncoderConfig) -> None:
        super().__init__()
        C = cfg.embed_dim
        self.cross_view = MultiScaleDeformableAttention(C, cfg.num_heads, 3, cfg.cross_view_points)
        self.image_attn = nn.ModuleList(MultiScaleDeformableAttention(C, cfg.num_heads, cfg.num_levels, p)
                                        for p in cfg.image_points)
        self.norms = nn.ModuleList(nn.LayerNorm(C) for _ in range(3))
        self.ffn = nn.Sequential(nn.Linear(C, cfg.ffn_dim), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.ffn_dim, C))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, query: Tensor, pos: Tensor, cv_ref: Tensor, plane_shapes: Tensor, value: Tensor,
                spatial_shapes: Tensor, sizes: list[int], routes: list[tuple[Tensor, ...]]) -> Tensor:
        B, Qt, C = query.shape
        # 1. cross-view hybrid attention: the three planes are the three levels of the value.
        x = self.cross_view(query + pos, query, cv_ref.expand(B, -1, -1, -1, -1), plane_shapes)
        query = self.norms[0](query + self.drop(x))
        # 2. image cross-attention, per plane, only in the cameras that see each query.
        qp = (query + pos).split(sizes, dim=1)
        outs = []
        L = spatial_shapes.shape[0]
        for p, (attn, route) in enumerate(zip(self.image_attn, routes, strict=True)):
            rows, ref, mask, valid, count = route
            Q = sizes[p]
            flat = qp[p].reshape(B * Q, C)
            gathered = flat[rows]  # [B*N, M, C]
            A = ref.shape[2]
            ref_l = ref[:, :, None].expand(-1, -1, L, A, 2)
            y = attn(gathered, value, ref_l, spatial_shapes, point_mask=mask)  # [B*N, M, C]
            # Padding slots point at real queries: add zeros there (no boolean compaction, no sync).
            y = y * valid[..., None].to(y.dtype)
            acc = y.new_zeros(B * Q, C).index_add_(0, rows.reshape(-1), y.reshape(-1, C))
            outs.append(acc.reshape(B, Q, C) / count[..., None].to(acc.dtype))
        query = self.norms[1](query + self.drop(torch.cat(outs, 1)))
        # 3. feed-forward network.
        return self.norms[2](query + self.drop(self.ffn(query)))


class TPVEncoder(nn.Module):
    """Multi-camera images to a tri-perspective-view feature volume (Let Occ Flow sec. 3.2).

    Images go through a timm backbone and an FPN (L levels, C channels). Learned queries on the
    HW [NX, NY], ZH [NZ, NX] and WZ [NY, NZ] planes, with Fourier positional encodings, are
    refined by ``num_layers`` layers of eq. 3: cross-view hybrid attention between the planes
    (deformable attention with the three planes as three levels), image cross-attention
    (reference points along each query's missing axis projected into every camera; deformable
    attention over the FPN levels of the cameras that see at least one of them, averaged over
    those cameras; points behind a camera or outside its image are masked) and an FFN, each with
    a residual and LayerNorm. The volume is the broadcast sum of the planes.

    Args:
        config: a :class:`TPVEncoderConfig` (see ``PRESETS``).

    Example (``tiny`` preset, 6 cameras of 96 x 176)::

        enc = TPVEncoder(PRESETS["tiny"])
        volume = enc(images, intrinsics, cam_to_ego)  # [B, 32, 50, 50, 8]
    """

    def __init__(self, config: TPVEncoderConfig) -> None:
        super().__init__()
        if not isinstance(config, TPVEncoderConfig):
            raise TypeError(f"config must be a TPVEncoderConfig, got {type(config).__name__}")
        self.config = cfg = config
        C = cfg.embed_dim
        NX, NY, NZ = cfg.cells
        self.backbone = ImageBackbone(cfg.backbone, cfg.backbone_out_indices, C, cfg.num_levels,
                                      cfg.backbone_checkpoint, grad_checkpoint=cfg.grad_checkpoint,
                                      weights=cfg.backbone_weights)
        self.level_embed = nn.Parameter(torch.randn(cfg.num_levels, C) * 0.02)
        self.plane_dims = ((NX, NY), (NZ, NX), (NY, NZ))
        self.sizes = [a * b for a, b in self.plane_dims]
        self.queries = (nn.ParameterList(nn.Parameter(torch.randn(n, C)) for n in self.sizes)
                        if cfg.learned_queries else None)
        enc_dim = 2 * 2 * cfg.fourier_frequencies
        self.pos_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(enc_dim, C), nn.ReLU(inplace=True), nn.Linear(C, C)) for _ in range(3))
        self.layers = nn.ModuleList(_TPVLayer(cfg) for _ in range(cfg.num_layers))

        # Constant geometry (derived from the config, not saved in state dicts).
        cx, cy, cz = _centres(NX), _centres(NY), _centres(NZ)
        grid2 = lambda a, b: torch.stack(torch.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)  # noqa: E731
        coords = [grid2(cx, cy), grid2(cz, cx), grid2(cy, cz)]  # per plane, (row axis, column axis)
        axis_cells = [(NX, NY), (NZ, NX), (NY, NZ)]
        for p in range(3):
            self.register_buffer(f"_fourier{p}", fourier_encode(coords[p], cfg.fourier_frequencies,
                                                                axis_cells[p]), persistent=False)
        self.register_buffer("_plane_shapes", torch.tensor(self.plane_dims, dtype=torch.long),
                             persistent=False)
        self.register_buffer("_cv_ref", self._cross_view_reference(cx, cy, cz), persistent=False)
        lo = torch.tensor(cfg.lower)
        size = torch.tensor(cfg.upper) - lo
        for p, pts in enumerate(self._pillars(cx, cy, cz)):
            self.register_buffer(f"_pillar{p}", lo + pts * size, persistent=False)
        self.register_buffer("_mean", torch.tensor(_IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    # ---------------------------------------------------------------- geometry
    def _pillars(self, cx: Tensor, cy: Tensor, cz: Tensor) -> list[Tensor]:
        """Normalised 3D reference points [Q_p, A_p, 3] along each query's missing axis."""
        A = self.config.pillar_points
        out = []
        ax = [_centres(a) for a in A]
        # HW (i, j): x_i, y_j, z_a.
        x, y, z = torch.meshgrid(cx, cy, ax[0], indexing="ij")
        out.append(torch.stack([x, y, z], -1).reshape(-1, A[0], 3))
        # ZH (k, i): x_i, y_a, z_k.
        z, x, y = torch.meshgrid(cz, cx, ax[1], indexing="ij")
        out.append(torch.stack([x, y, z], -1).reshape(-1, A[1], 3))
        # WZ (j, k): x_a, y_j, z_k.
        y, z, x = torch.meshgrid(cy, cz, ax[2], indexing="ij")
        out.append(torch.stack([x, y, z], -1).reshape(-1, A[2], 3))
        return out

    def _cross_view_reference(self, cx: Tensor, cy: Tensor, cz: Tensor) -> Tensor:
        """[1, Qt, 3, A, 2] normalised (x, y) reference points of every query in the three planes.

        Levels: HW (rows x, cols y) -> loc (y, x); ZH (rows z, cols x) -> (x, z); WZ (rows y, cols z)
        -> (z, y). In its own plane a query refers to itself; in the others to ``A`` points evenly
        along its missing axis.
        """
        A = self.config.cross_view_anchors
        a = _centres(A)

        def loc(x: Tensor, y: Tensor, z: Tensor) -> Tensor:  # each [Q, A]
            return torch.stack([torch.stack([y, x], -1), torch.stack([x, z], -1), torch.stack([z, y], -1)], 1)

        x, y, z = torch.meshgrid(cx, cy, a, indexing="ij")  # HW queries, z along anchors
        hw = loc(x.reshape(-1, A), y.reshape(-1, A), z.reshape(-1, A))
        z, x, y = torch.meshgrid(cz, cx, a, indexing="ij")  # ZH queries, y along anchors
        zh = loc(x.reshape(-1, A), y.reshape(-1, A), z.reshape(-1, A))
        y, z, x = torch.meshgrid(cy, cz, a, indexing="ij")  # WZ queries, x along anchors
        wz = loc(x.reshape(-1, A), y.reshape(-1, A), z.reshape(-1, A))
        return torch.cat([hw, zh, wz], 0)[None]

    def _routes(self, intrinsics: Tensor, cam_to_ego: Tensor, image_size: tuple[int, int]) -> list[tuple]:
        """Per plane: which queries each camera sees, and where (see ``_TPVLayer.forward``)."""
        B, N = intrinsics.shape[:2]
        H, W = image_size
        routes = []
        for p in range(3):
            pillars = getattr(self, f"_pillar{p}")  # [Q, A, 3]
            Q, A, _ = pillars.shape
            pts = pillars.reshape(1, Q * A, 3).expand(B, -1, -1)
            uv, _, vis = project_to_cameras(pts, intrinsics.float(), cam_to_ego.float(), (H, W),
                                            self.config.min_depth)
            loc = (uv + 0.5) / torch.tensor([W, H], dtype=uv.dtype, device=uv.device)
            loc = torch.where(vis[..., None], loc, torch.zeros_like(loc)).reshape(B * N, Q, A, 2)
            vis = vis.reshape(B * N, Q, A)
            seen = vis.any(-1)  # [B*N, Q]
            counts = seen.sum(-1)
            M = max(int(counts.max()), 1)
            order = torch.sort((~seen).to(torch.uint8), dim=1, stable=True).indices[:, :M]  # seen first
            valid = torch.arange(M, device=seen.device)[None] < counts[:, None]  # [B*N, M]
            rows = order + (torch.arange(B * N, device=seen.device) // N * Q)[:, None]
            ref = loc.gather(1, order[..., None, None].expand(-1, -1, A, 2))
            mask = vis.gather(1, order[..., None].expand(-1, -1, A)) & valid[..., None]
            count = seen.reshape(B, N, Q).sum(1).clamp_min(1).to(torch.float32)
            routes.append((rows, ref, mask, valid, count))
        return routes

    # ---------------------------------------------------------------- forward
    def _check_inputs(self, images: object, intrinsics: object, cam_to_ego: object) -> None:
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, N, 3, H, W], got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point in [0, 1], got {images.dtype}")
        check_calibration(intrinsics, cam_to_ego, images.shape[0], images.shape[1])
        for name, t in (("intrinsics", intrinsics), ("cam_to_ego", cam_to_ego)):
            if t.device != images.device:
                raise ValueError(f"{name} is on {t.device} but images are on {images.device}")

    def image_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """FPN features of all cameras, flattened: ([B*N, S, C], spatial_shapes [L, 2])."""
        B, N, _, H, W = images.shape
        x = images.reshape(B * N, 3, H, W)
        if self.config.normalize_images:
            x = (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)
        feats = self.backbone(x)
        shapes = torch.tensor([f.shape[-2:] for f in feats], dtype=torch.long, device=images.device)
        value = torch.cat([f.flatten(2).transpose(1, 2) + self.level_embed[l] for l, f in enumerate(feats)],
                          dim=1)
        return value, shapes

    def encode_planes(self, images: Tensor, intrinsics: Tensor, cam_to_ego: Tensor) -> TPVPlanes:
        """Run the encoder and return the three planes (see :meth:`forward` for the arguments)."""
        self._check_inputs(images, intrinsics, cam_to_ego)
        B, N, _, H, W = images.shape
        value, spatial_shapes = self.image_features(images)
        routes = self._routes(intrinsics, cam_to_ego, (H, W))
        pos = torch.cat([mlp(getattr(self, f"_fourier{p}")) for p, mlp in enumerate(self.pos_mlps)], 0)[None]
        if self.queries is not None:
            query = torch.cat(list(self.queries), 0)[None].expand(B, -1, -1)
        else:
            query = pos.new_zeros(B, sum(self.sizes), self.config.embed_dim)
        for layer in self.layers:
            args = (query, pos, self._cv_ref, self._plane_shapes, value, spatial_shapes, self.sizes, routes)
            if self.config.grad_checkpoint and self.training and torch.is_grad_enabled():
                query = checkpoint(layer, *args, use_reentrant=False)
            else:
                query = layer(*args)
        C = self.config.embed_dim
        hw, zh, wz = query.split(self.sizes, dim=1)
        (NX, NY), (NZ, _), _ = self.plane_dims
        return TPVPlanes(hw.transpose(1, 2).reshape(B, C, NX, NY), zh.transpose(1, 2).reshape(B, C, NZ, NX),
                         wz.transpose(1, 2).reshape(B, C, NY, NZ))

    def forward(self, images: Tensor, intrinsics: Tensor, cam_to_ego: Tensor) -> Tensor:
        """Encode one frame of multi-camera images into a feature volume.

        Args:
            images: [B, N, 3, H, W] images in [0, 1] (N cameras).
            intrinsics: [B, N, 3, 3] camera matrices at the (H, W) resolution, pixels.
            cam_to_ego: [B, N, 4, 4] camera-to-ego transforms (OpenCV cameras: x right, y down,
                z forward; ego: x forward, y left, z up), metres.

        Returns:
            [B, C, X, Y, Z] feature volume over the config's box, at ``config.out_cells``.

        Raises:
            TypeError: an input is not a tensor.
            ValueError: shapes, dtypes or devices do not fit, or calibration is not finite.
        """
        planes = self.encode_planes(images, intrinsics, cam_to_ego)
        return tpv_to_volume(*planes, self.config.volume_cells)
