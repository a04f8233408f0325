"""Gather items submitted within a few milliseconds into one call of a batch function.

The router's cost per query falls steeply with the batch size (an encoder embeds a batch of
200 queries in about a quarter of the time per query of one alone), so concurrent requests
are routed together: the first item waits ``window_s``, everything that arrived meanwhile
(up to ``max_batch``) goes into one call, and items arriving during that call form the next
batch. The batch function runs in one worker thread, so it never blocks the event loop and is
never called concurrently with itself (encoders are not thread-safe).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

__all__ = ["MicroBatcher", "BatchStats"]


class BatchStats:
    """Counters of a :class:`MicroBatcher`: batches run, items, and seconds spent."""

    def __init__(self):
        self.batches = 0
        self.items = 0
        self.seconds = 0.0

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher:
    """Batch concurrent submissions into calls of ``fn(items) -> results``.

    Parameters
    ----------
    fn : callable
        Takes a list of items, returns a sequence of results of the same length. An exception
        is given to every item of the batch.
    window_s : float, default=0.003
        How long the first item of a batch waits for others.
    max_batch : int, default=64
        Most items per call.
    on_batch : callable, optional
        Called with ``(n_items, seconds)`` after each call (metrics).
    """

    def __init__(self, fn: Callable[[list], Sequence], *, window_s: float = 0.003,
                 max_batch: int = 64, on_batch: Callable | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}.")
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}.")
        self.fn = fn
        self.window_s = float(window_s)
        self.max_batch = int(max_batch)
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ttc-route")

    def _ensure_started(self):
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, item):
        """Add an item to the next batch and wait for its result.

        Returns
        -------
        result, batch_size, batch_seconds, batch_cpu_seconds
            The item's result, how many items its batch held, the wall time of the batch call
            and the CPU time its thread used (to share the cost out per item, and to tell
            compute from waiting for a core).
        """
        self._ensure_started()
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((item, fut))
        return await fut

    async def _loop(self):
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            if self.window_s:
                await asyncio.sleep(self.window_s)
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                results, cpu = await loop.run_in_executor(self._pool, self._timed,
                                                          [item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for "
                                       f"{len(batch)} items")
                error = None
            except Exception as exc:  # noqa: BLE001 - handed to every waiting item
                results, error, cpu = None, exc, 0.0
            seconds = time.perf_counter() - t0
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.seconds += seconds
            if self.on_batch is not None:
                self.on_batch(len(batch), seconds)
            for k, (_, fut) in enumerate(batch):
                if fut.done():
                    continue
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result((results[k], len(batch), seconds, cpu))

    def _timed(self, items):
        c0 = time.thread_time()
        results = self.fn(items)
        return results, time.thread_time() - c0

    async def close(self):
        """Stop the batching task and the worker thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None
        self._pool.shutdown(wait=False, cancel_futures=True)
