"""The one thread pool every parallel step uses, how large it may grow, and what it does on Ctrl-C."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

# At most this many hosts are worked on at once, unless the classroom file's `preload.parallel`
# says otherwise (it is this policy's only knob). Two cores: 30 SSH sessions at once were slower
# than 16 (each handshake and each SFTP byte costs CPU on both sides), and creating 30 local hosts
# took 21.9 s with 16 threads, 22.9 s with 8 (the engine serialises part of it).
PARALLEL = 16


@contextmanager
def worker_pool(items: int, limit: int = PARALLEL) -> Iterator[ThreadPoolExecutor]:
    """A pool for `items` pieces of work, never more than `limit` threads (nor fewer than one).

    When the block fails (Ctrl-C above all) it cancels the work not yet started and does not wait
    for the hosts in progress: `with ThreadPoolExecutor()` would keep the trainer waiting for every
    one of them. The CLI then exits at once (cli.main), and the next `up` converges whatever was
    half done."""
    pool = ThreadPoolExecutor(max(1, min(items, limit)))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
