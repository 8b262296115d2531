"""The small default world used by the training default: generated once into a cache folder."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from .. import __version__
from ._io import MARKER, atomic_dir
from ._nuscenes import NuScenesConfig, write_nuscenes

ENV_CACHE = "OCCFLOW_CACHE"


def default_world_config() -> NuScenesConfig:
    """The default world: 4 scenes (3 mini_train, 1 mini_val) of 20 keyframes (10 s) at 112 x 200
    pixels, two camera sweeps between keyframes (6 Hz) and LiDAR at the keyframes only (2 Hz)."""
    return NuScenesConfig(
        scenes=4, keyframes=20, seed=0, height=112, width=200, camera_sweeps=2, lidar_sweeps=0
    )


def _source_digest() -> str:
    """Digest of the generator's source files, so a changed generator never reuses a stale cache."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def default_world(
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    config: NuScenesConfig | None = None,
    progress: bool = True,
) -> Path:
    """Return the folder of the default synthetic nuScenes-layout dataset, generating it on first use.

    The folder is ``<cache>/synth-nuscenes-<hash>`` where ``<hash>`` covers the config, the package
    version and the generator's source files, so a changed generator never reuses stale data.
    ``<cache>`` is ``cache_dir``, else the environment variable ``OCCFLOW_CACHE``, else
    ``~/.cache/occflow``. Generation is atomic; concurrent callers (e.g. two training processes)
    both succeed and one copy is kept.

    Args:
        cache_dir: cache root folder.
        device: Warp device used if the world must be generated.
        config: override the dataset config (default ``default_world_config()``).
        progress: show a progress bar while generating.

    Returns:
        The dataset root (load it with ``NuScenes("v1.0-mini", root)``).
    """
    cfg = config or default_world_config()
    if not isinstance(cfg, NuScenesConfig):
        raise TypeError(f"config must be a NuScenesConfig, got {type(cfg).__name__}")
    root = Path(cache_dir or os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "occflow").expanduser()
    key = hashlib.sha256(f"{cfg!r}|{__version__}|{_source_digest()}".encode()).hexdigest()[:12]
    out = root / f"synth-nuscenes-{key}"
    if (out / MARKER).is_file():
        return out
    if out.exists() and not any(out.iterdir()):
        out.rmdir()
    elif out.exists():  # a folder without a marker is not ours to trust: replace it
        shutil.rmtree(out, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    marker = {"generator": "occflow_data.synth.default_world", "version": __version__, "config": repr(cfg)}
    with tqdm(
        total=cfg.scenes * cfg.keyframes, unit="frame", desc="synthetic default world", disable=not progress
    ) as bar:
        try:
            with atomic_dir(out, False, marker) as tmp:
                write_nuscenes(tmp, cfg, device, bar.update)
        except (OSError, ValueError):
            if (out / MARKER).is_file():  # another process finished first
                return out
            raise
    return out
