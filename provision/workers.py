"""The one thread pool every parallel step uses, and what it does on Ctrl-C."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


@contextmanager
def worker_pool(size: int) -> Iterator[ThreadPoolExecutor]:
    """A ThreadPoolExecutor that, when the block fails (Ctrl-C above all), cancels the work not
    yet started and does not wait for the hosts in progress: `with ThreadPoolExecutor()` would
    keep the trainer waiting for every one of them. The CLI then exits at once (cli.main), and
    the next `up` converges whatever was half done."""
    pool = ThreadPoolExecutor(size)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
