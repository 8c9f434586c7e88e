"""Large FHIR bodies are parsed and validated in worker processes, so the serving process's interpreter lock
stays free for every other request (`/healthz`, feed reads) while a 1,000-entry Bundle is validated.

One pool per serving process (the embedded mode's services share it), spawned on first use, capped in size.
Small bodies are parsed inline: below the threshold the trip to another process costs more than it frees.
What crosses the process boundary is pickled: the body in, the parsed result (pydantic models) or the
RelaisError (status, diagnostics, expression and issues kept) out, so the answer is the one inline parsing gives.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Bodies from this size on leave the serving process (a 100-entry Bundle is about 55 kB and takes ~70 ms).
OFFLOAD_FROM_BYTES = 64 * 1024
# Never more workers than cores, and never more than two: the serving process needs a core too.
MAX_WORKERS = max(1, min(2, os.cpu_count() or 1))

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _shared_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # spawn, not fork: the serving process has threads (uvicorn, workers) a fork would copy mid-lock.
            _pool = ProcessPoolExecutor(MAX_WORKERS, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def _discard(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


def off_the_lock(size: int, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)`, in a worker process when the body is `size` bytes or more; its exceptions are raised here
    as they were raised there. `work` and `args` must be picklable (a module-level function, plain data)."""
    if size < OFFLOAD_FROM_BYTES:
        return work(*args)
    pool = _shared_pool()
    try:
        return pool.submit(work, *args).result()
    except BrokenProcessPool:
        # A worker died (killed, out of memory): a new pool next time, and this body parsed here.
        logger.warning("FHIR parsing pool broken; parsing inline and starting a new pool")
        _discard(pool)
        return work(*args)


def shutdown() -> None:
    """Stop the workers (tests, service shutdown); the next large body starts a new pool."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
