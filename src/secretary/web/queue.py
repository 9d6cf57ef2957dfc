"""The bounded work queue in front of a blocking engine, shared by every service.

Requests wait here in order and run on the engine's own thread pool; a full queue answers
503 at once. Services call it from plain Python (``run``, ``admit``, ``stream``): nothing
here knows about HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from secretary.errors import ServiceBusyError

T = TypeVar("T")


class WorkQueue:
    """A bounded queue in front of a blocking engine.

    ``max_concurrency`` jobs run at once on a thread pool of that size; up to ``max_queue``
    more wait in order. Past that, ``ServiceBusyError`` (503 with ``Retry-After``) is
    raised at once instead of letting requests pile up. A job that was accepted always
    runs to completion, even if its client goes away.
    """

    def __init__(
        self, name: str, max_concurrency: int, max_queue: int, *, retry_after: int = 2
    ) -> None:
        self.name = name
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.retry_after = retry_after
        self._slots = asyncio.Semaphore(max_concurrency)
        self._admitted = 0
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix=f"{name}-engine")

    @property
    def admitted(self) -> int:
        """Jobs running or waiting."""
        return self._admitted

    @property
    def capacity(self) -> int:
        return self.max_concurrency + self.max_queue

    def ensure_capacity(self) -> None:
        """Raise 503 now if a job would be refused. For streamed answers: the check runs
        before the response starts, the admission itself inside the stream, so a stream
        that never starts (client gone) holds no place."""
        if self._admitted >= self.capacity:
            raise ServiceBusyError(
                f"the {self.name} service is busy ({self._admitted} requests in progress or "
                "waiting); try again shortly",
                retry_after=self.retry_after,
            )

    def admit(self) -> _Admission:
        self.ensure_capacity()
        self._admitted += 1
        return _Admission(self)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Admit, wait for a slot, run ``fn`` in the engine's thread pool."""
        async with self.admit() as admission:
            return await admission.call(fn, *args)

    def stream(self, make_iterator: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """A streamed answer from a blocking iterator, run in the engine pool.

        Capacity is checked now, so a full queue still gets a 503 before the response
        starts; the place is taken when the stream starts and given back when it ends or
        the client leaves, so a stream that never starts holds nothing.
        """
        self.ensure_capacity()

        async def items() -> AsyncIterator[T]:
            async with self.admit() as slot:
                iterator = make_iterator()
                try:
                    async for item in slot.iterate(iterator):
                        yield item
                finally:
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()

        return items()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=False)


_END: Any = object()


class _Admission:
    """A place in the queue; holds a run slot while inside ``async with``."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    async def __aenter__(self) -> _Admission:
        try:
            await self._queue._slots.acquire()
        except BaseException:
            self._queue._admitted -= 1
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._queue._slots.release()
        self._queue._admitted -= 1

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._queue._executor, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The client went away. The engine call cannot be interrupted, so keep the slot
            # until it ends: the next job must never overlap a running one.
            await asyncio.wait([future])
            raise

    async def iterate(self, iterator: Iterator[T]) -> AsyncIterator[T]:
        """Pull items from a blocking iterator (a lazy engine result) in the engine pool."""
        while True:
            item = await self.call(next, iterator, _END)
            if item is _END:
                return
            yield item
