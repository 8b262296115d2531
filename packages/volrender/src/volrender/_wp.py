"""Warp initialisation and torch <-> Warp helpers shared by the ops (private)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch


@functools.cache
def warp():
    """Import and initialise Warp once (quietly); returns the ``warp`` module.

    The kernel cache location can be set with Warp's own ``WARP_CACHE_PATH`` environment variable.
    """
    import warp as wp

    wp.config.log_level = wp.LOG_WARNING
    wp.init()
    return wp


def scalar_type(dtype: torch.dtype):
    wp = warp()
    return {torch.float32: wp.float32, torch.float64: wp.float64}[dtype]


def device(t: torch.Tensor):
    return warp().device_from_torch(t.device)


def arr(t: torch.Tensor | None, like: torch.Tensor):
    """A flat Warp view (no copy) of the contiguous tensor ``t`` (or a 1-element dummy when None).

    Never copies: kernels write outputs through these views, so a copy would lose them.
    """
    wp = warp()
    if t is None or t.numel() == 0:
        t = torch.zeros(1, dtype=like.dtype, device=like.device)
    if not t.is_contiguous():
        raise RuntimeError("volrender internal error: a tensor handed to Warp is not contiguous")
    return wp.from_torch(t.detach().view(-1), dtype=scalar_type(like.dtype), requires_grad=False)


def cpu_chunks(n: int) -> int:
    """How many ray chunks to launch from parallel Python threads on the CPU.

    Warp runs a CPU kernel on one thread; launches from several Python threads run concurrently
    (ctypes releases the GIL). ``VOLRENDER_CPU_THREADS`` overrides the default (torch's thread count).
    At most 8: every chunk's backward pass needs its own gradient buffers (one grid's worth each).
    """
    want = int(os.environ.get("VOLRENDER_CPU_THREADS", torch.get_num_threads()))
    return max(1, min(want, 8, n // 256 if n >= 512 else 1))


def launch_chunked(launch: Callable[[int, int, int], None], n: int, chunks: int) -> None:
    """Call ``launch(chunk_index, offset, count)`` for ``chunks`` contiguous ranges of ``[0, n)``,
    concurrently from Python threads when ``chunks > 1``."""
    bounds = [n * c // chunks for c in range(chunks + 1)]
    jobs = [(c, bounds[c], bounds[c + 1] - bounds[c]) for c in range(chunks) if bounds[c + 1] > bounds[c]]
    if len(jobs) == 1:
        launch(*jobs[0])
        return
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for f in [pool.submit(launch, *job) for job in jobs]:
            f.result()
