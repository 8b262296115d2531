"""Deterministic file writing and atomic dataset folders."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

MARKER = ".occflow-synth-complete.json"


def token(*parts) -> str:
    """A deterministic 32-hex-digit token from ``parts`` (nuScenes token format)."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def save_npz(path: Path, compress: bool = True, **arrays: np.ndarray) -> None:
    """``np.savez`` with fixed zip timestamps, so equal arrays give byte-identical files."""
    buf = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", mode) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = mode
            body = io.BytesIO()
            np.lib.format.write_array(body, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, body.getvalue(), compresslevel=1 if compress else None)
    path.write_bytes(buf.getvalue())


def save_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1))


def save_image(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    img = Image.fromarray(rgb)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, quality=quality, subsampling=0)
    else:
        img.save(path)


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out`` unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out must be a folder, {out} is a file")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"out folder {out} is not empty; pass overwrite=True (--overwrite) to replace it")


@contextmanager
def atomic_dir(out: Path, overwrite: bool, marker: dict):
    """Yield a temporary sibling folder; on success write ``marker`` last and move it to ``out``.

    A killed run leaves only ``<out>.tmp-*`` (no marker), never a complete-looking ``out``.
    """
    out = Path(out)
    check_out_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        yield tmp
        save_json(tmp / MARKER, marker)
        old = None
        if out.exists():
            if any(out.iterdir()) and not overwrite:  # appeared while we were writing
                raise FileExistsError(f"{out} was filled by someone else while writing; not replaced")
            if any(out.iterdir()):
                old = Path(tempfile.mkdtemp(prefix=out.name + ".old-", dir=out.parent))
                os.replace(out, old / "data")
            else:
                out.rmdir()
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
