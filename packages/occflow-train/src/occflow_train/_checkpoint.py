"""Atomic, resumable training checkpoints on top of ``accelerate``'s ``save_state``.

Layout under ``<run>/checkpoints/``::

    step-00000120/        a complete checkpoint (accelerate state + progress.json, written last)
    .tmp-step-00000140/   a checkpoint being written: never read, removed on the next save

A checkpoint folder is renamed into place only after every process has written its part and
``progress.json`` is on disk, so a run killed at any moment leaves either the previous
complete checkpoint or the new one, never a half-written folder that looks complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

_NAME = re.compile(r"^step-(\d{8})$")
PROGRESS_FILE = "progress.json"


@dataclass(frozen=True)
class Progress:
    """Where training stands; saved in every checkpoint.

    Attributes:
        stage: the stage being trained (1 or 2).
        step: optimiser steps completed in this stage.
        global_step: optimiser steps completed over all stages (names the checkpoint).
        finished: True once ``stage`` has run all its steps.
    """

    stage: int
    step: int
    global_step: int
    finished: bool = False


def _checkpoint_dir(root: Path, global_step: int) -> Path:
    return root / f"step-{global_step:08d}"


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (folders with a ``progress.json``)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir()
             if p.is_dir() and _NAME.match(p.name) and (p / PROGRESS_FILE).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_progress(checkpoint: str | os.PathLike) -> Progress:
    """The :class:`Progress` stored in a checkpoint folder.

    Raises:
        ValueError: ``checkpoint`` has no readable ``progress.json`` (it is not a complete
            checkpoint written by :func:`save_checkpoint`).
    """
    path = Path(checkpoint) / PROGRESS_FILE
    try:
        data = json.loads(path.read_text())
        return Progress(**{k: data[k] for k in ("stage", "step", "global_step", "finished")})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a complete occflow_train checkpoint ({err})") from err


def save_checkpoint(accelerator, root: str | os.PathLike, progress: Progress, keep_last: int,
                    extra: dict | None = None) -> Path:
    """Save the full training state atomically and keep only the newest ``keep_last``.

    Every process must call this (``save_state`` is collective); only the main process renames
    and prunes.

    Args:
        accelerator: the ``accelerate.Accelerator`` whose prepared objects are saved.
        root: the checkpoints folder of the run.
        progress: counters to resume from.
        keep_last: number of complete checkpoints to keep (>= 1).
        extra: JSON-serialisable facts stored beside the progress (e.g. the config).

    Returns:
        The folder of the new checkpoint.
    """
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise ValueError(f"keep_last must be an int >= 1, got {keep_last!r}")
    root = Path(root)
    final = _checkpoint_dir(root, progress.global_step)
    tmp = root / f".tmp-{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        payload = {**asdict(progress), **({"extra": extra} if extra else {})}
        with open(tmp / PROGRESS_FILE, "w") as fh:
            json.dump(payload, fh, indent=2, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        if final.exists():  # a re-save of the same step (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, checkpoint: str | os.PathLike) -> Progress:
    """Restore the state saved by :func:`save_checkpoint` into ``accelerator``'s objects."""
    progress = read_progress(checkpoint)
    accelerator.load_state(str(checkpoint))
    return progress
