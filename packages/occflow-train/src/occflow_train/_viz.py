"""Pictures of predictions: colour maps as tensors, and one matplotlib figure per frame.

Colour functions return ``[H, W, 3]`` float arrays in [0, 1] so they can be tested, logged to
TensorBoard or saved; :func:`save_frame_figure` lays them out in one PNG.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def _as_numpy(x: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a tensor or array, got {type(x).__name__}")
    return x


def flow_to_rgb(flow: torch.Tensor | np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """Colour-wheel picture of a 2-D vector field (hue = direction, saturation = length).

    Args:
        flow: ``[2, H, W]`` vectors (any unit; e.g. pixels, or (dx, dy) metres in the ego frame).
        max_norm: length shown fully saturated; default the 99th percentile of the lengths.

    Returns:
        ``[H, W, 3]`` float32 RGB in [0, 1]; zero vectors are white.
    """
    f = _as_numpy(flow, "flow")
    if f.ndim != 3 or f.shape[0] != 2:
        raise ValueError(f"flow must have shape [2, H, W], got {tuple(f.shape)}")
    f = np.nan_to_num(f)
    mag = np.hypot(f[0], f[1])
    if max_norm is None:
        max_norm = float(np.percentile(mag, 99)) if mag.size else 1.0
    max_norm = max(max_norm, 1e-6)
    hue = (np.arctan2(-f[1], -f[0]) / math.pi + 1.0) / 2.0          # [0, 1)
    sat = np.clip(mag / max_norm, 0.0, 1.0)
    # HSV with V = 1 -> RGB
    h6 = hue * 6.0
    i = np.floor(h6).astype(int) % 6
    frac = h6 - np.floor(h6)
    p = 1.0 - sat
    q = 1.0 - sat * frac
    t = 1.0 - sat * (1.0 - frac)
    one = np.ones_like(sat)
    table = [(one, t, p), (q, one, p), (p, one, t), (p, q, one), (t, p, one), (one, p, q)]
    rgb = np.zeros((*sat.shape, 3), dtype=np.float32)
    for k, (r, g, b) in enumerate(table):
        m = i == k
        rgb[m] = np.stack([r[m], g[m], b[m]], axis=-1)
    return rgb


def depth_to_rgb(depth: torch.Tensor | np.ndarray, max_depth: float | None = None,
                 min_valid: float = 0.1) -> np.ndarray:
    """``[H, W]`` depth (metres) to ``[H, W, 3]`` RGB, near = bright, none = black.

    Depths below ``min_valid`` metres count as none (rendered rays that hit nothing, e.g. sky,
    have a depth near 0 because their opacity is near 0).

    Inverse depth is mapped linearly from ``max_depth`` (default: the 95th percentile, darkest) to
    the 5th percentile of the depths (brightest) through matplotlib's "magma".
    """
    d = _as_numpy(depth, "depth")
    if d.ndim != 2:
        raise ValueError(f"depth must have shape [H, W], got {tuple(d.shape)}")
    import matplotlib

    valid = d > min_valid
    if max_depth is None:
        max_depth = float(np.percentile(d[valid], 95)) if valid.any() else 1.0
    # inverse depth between the 5th percentile (brightest) and max_depth (darkest), so that a few
    # very near pixels do not squeeze everything else into black
    min_depth = float(np.percentile(d[valid], 5)) if valid.any() else 1e-3
    min_depth = min(max(min_depth, 1e-3), max_depth * 0.999)
    inv = np.where(valid, 1.0 / np.maximum(d, 1e-3), 0.0)
    lo, hi = 1.0 / max(max_depth, 1e-3), 1.0 / min_depth
    norm = np.clip((inv - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = matplotlib.colormaps["magma"](norm)[..., :3].astype(np.float32)
    rgb[~valid] = 0.0
    return rgb


def bev_height(occupied: torch.Tensor | np.ndarray, z_centres: torch.Tensor | np.ndarray) -> np.ndarray:
    """Bird's-eye view of an occupancy grid coloured by the height of the top occupied voxel.

    Args:
        occupied: ``[X, Y, Z]`` bool occupancy (ego frame, x forward, y left).
        z_centres: ``[Z]`` heights of the voxel centres, metres.

    Returns:
        ``[X, Y, 3]`` RGB; row 0 is the most forward x (image up = ego forward), column 0 the
        most leftward y, empty columns white.
    """
    occ = _as_numpy(occupied, "occupied").astype(bool)
    z = _as_numpy(z_centres, "z_centres")
    if occ.ndim != 3 or z.shape != (occ.shape[2],):
        raise ValueError(f"occupied must be [X, Y, Z] and z_centres [Z], got {occ.shape} and {z.shape}")
    import matplotlib

    any_occ = occ.any(axis=2)
    top = np.where(any_occ, occ.shape[2] - 1 - np.argmax(occ[:, :, ::-1], axis=2), 0)
    height = z[top]
    norm = (height - z.min()) / max(float(z.max() - z.min()), 1e-6)
    rgb = matplotlib.colormaps["viridis"](norm)[..., :3].astype(np.float32)
    rgb[~any_occ] = 1.0
    return np.ascontiguousarray(rgb[::-1, ::-1])   # x up (forward), y to the left


def save_frame_figure(path: str | Path, *, images: torch.Tensor, depth: torch.Tensor,
                      flow: torch.Tensor | None, bev_pred: np.ndarray, bev_gt: np.ndarray | None,
                      arrows: tuple[np.ndarray, np.ndarray] | None = None,
                      novel_depth: torch.Tensor | None = None, title: str = "") -> Path:
    """One PNG per frame: cameras, rendered depth, rendered flow, BEV predicted vs GT.

    Args:
        path: output PNG path (parent folders are created).
        images: ``[N, 3, H, W]`` input cameras in [0, 1].
        depth: ``[N, h, w]`` rendered depth per camera, metres.
        flow: ``[N, 2, h, w]`` rendered flow per camera (ego-frame dx, dy, metres per step) or None.
        bev_pred: ``[X, Y, 3]`` picture from :func:`bev_height` of the prediction.
        bev_gt: same for the ground truth, or None.
        arrows: optional ``(positions [K, 2], vectors [K, 2])`` in BEV pixel coordinates
            (column, row) drawn over the predicted BEV (flow on moving objects).
        novel_depth: ``[h, w]`` depth rendered from a moved camera, or None.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = images.shape[0]
    rows = 3 if flow is not None else 2
    cols = max(n, 3 if bev_gt is not None else 2)
    fig, axes = plt.subplots(rows + 1, cols, figsize=(2.6 * cols, 1.7 * rows + 3.2),
                             gridspec_kw={"height_ratios": [1] * rows + [2.2]}, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        axes[0, i].imshow(_as_numpy(images[i].permute(1, 2, 0), "images").clip(0, 1))
        axes[0, i].set_title(f"camera {i}", fontsize=7)
        axes[1, i].imshow(depth_to_rgb(depth[i]))
        if flow is not None:
            axes[2, i].imshow(flow_to_rgb(flow[i]))
    axes[1, 0].set_title("rendered depth", fontsize=7, loc="left")
    if flow is not None:
        axes[2, 0].set_title("rendered flow (colour wheel)", fontsize=7, loc="left")
    axes[rows, 0].imshow(bev_pred)
    axes[rows, 0].set_title("predicted occupancy (BEV, height)", fontsize=7)
    if arrows is not None and len(arrows[0]):
        pos, vec = arrows
        axes[rows, 0].quiver(pos[:, 0], pos[:, 1], vec[:, 0], -vec[:, 1], color="red",
                             angles="xy", scale_units="xy", scale=0.2, width=0.004)
    col = 1
    if bev_gt is not None:
        axes[rows, 1].imshow(bev_gt)
        axes[rows, 1].set_title("ground truth (BEV, height)", fontsize=7)
        col = 2
    if novel_depth is not None and col < cols:
        axes[rows, col].imshow(depth_to_rgb(novel_depth))
        axes[rows, col].set_title("depth from a novel viewpoint", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
