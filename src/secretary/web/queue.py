"""The bounded work queue in front of a blocking engine, shared by every service.

Requests take a place here (a ``Ticket``) before anything costly happens, wait in order
and run on the engine's own thread pool; a full queue answers 503 at once. The place is
taken before a response starts, streamed or not, so a 200 always carries its whole body.
Services call it from plain Python (``run``, ``admit``, ``stream``): nothing here knows
about HTTP.

Work is cancelled when nobody waits for it any more: when the awaiting task is cancelled
(the client went away), the job's ``Cancellation`` is set, and long jobs call
``check_cancelled()`` between their steps (segments, sentences, frames).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from secretary.errors import ServiceBusyError

T = TypeVar("T")


class JobCancelled(Exception):  # noqa: N818 - reads as what happened
    """Raised inside a job by ``check_cancelled`` once its client has gone."""


_current_cancel: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "secretary_job_cancel", default=None)


def check_cancelled() -> None:
    """Stop the running job here if its client has gone (call it between steps)."""
    event = _current_cancel.get()
    if event is not None and event.is_set():
        raise JobCancelled("the client went away")


class WorkQueue:
    """A bounded queue in front of a blocking engine.

    ``max_concurrency`` jobs run at once on a thread pool of that size; up to ``max_queue``
    more wait in order. Past that, ``ServiceBusyError`` (503 with ``Retry-After``) is
    raised at once instead of letting requests pile up.
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
        self._lock = threading.Lock()  # tickets may be dropped from another thread
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix=f"{name}-engine")

    @property
    def admitted(self) -> int:
        """Jobs running or waiting."""
        return self._admitted

    @property
    def capacity(self) -> int:
        return self.max_concurrency + self.max_queue

    def admit(self) -> Ticket:
        """Take a place now, or raise 503 now. The place is given back by ``release`` (or
        leaving ``with ticket:``), and at the latest when the ticket is dropped."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise ServiceBusyError(
                    f"the {self.name} service is busy ({self._admitted} requests in progress "
                    "or waiting); try again shortly",
                    retry_after=self.retry_after,
                )
            self._admitted += 1
        return Ticket(self)

    def _give_back(self) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, fn: Callable[..., T], *args: Any, ticket: Ticket | None = None) -> T:
        """Admit (unless ``ticket`` holds a place already), wait for a slot, run ``fn`` in
        the engine's thread pool."""
        with ticket or self.admit() as place:
            async with place.slot():
                return await place.call(fn, *args)

    def stream(self, make_iterator: Callable[[], Iterator[T]], *,
               ticket: Ticket | None = None) -> AsyncIterator[T]:
        """A streamed answer from a blocking iterator, run in the engine pool.

        The place is taken now (a full queue raises 503 before any response starts) and
        given back when the stream ends, fails, is closed, or is dropped unstarted.
        """
        place = ticket or self.admit()

        async def items() -> AsyncIterator[T]:
            with place:
                async with place.slot():
                    iterator = make_iterator()
                    try:
                        async for item in place.iterate(iterator):
                            yield item
                    finally:
                        close = getattr(iterator, "close", None)
                        if close is not None:
                            close()

        return items()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=False)


_END: Any = object()


class Ticket:
    """A place in the queue, held from admission until the answer is complete."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue
        self._held = True
        self.cancel = threading.Event()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._queue._give_back()

    def __del__(self) -> None:
        # A stream that was never started (its client left before the body) still gives
        # its place back.
        self.release()

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def slot(self) -> _Slot:
        """``async with ticket.slot():`` holds one of the engine's run slots."""
        return _Slot(self)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the engine pool (the caller holds a slot)."""
        return await self._in_pool(self._queue._executor, fn, *args)

    async def decode(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` (decoding an upload) in the shared bounded pool for such work, under
        this ticket's place but without taking an engine slot."""
        return await self._in_pool(DECODE_POOL, fn, *args)

    async def _in_pool(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(_current_cancel.set, self.cancel)
        future = loop.run_in_executor(pool, context.run, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The client went away: ask the job to stop at its next step, and keep the slot
            # until it has, so the next job never overlaps a running one.
            self.cancel.set()
            await asyncio.wait([future])
            if not future.cancelled():
                future.exception()  # retrieved: JobCancelled is the expected end here
            raise

    async def iterate(self, iterator: Iterator[T]) -> AsyncIterator[T]:
        """Pull items from a blocking iterator (a lazy engine result) in the engine pool."""
        while True:
            item = await self.call(next, iterator, _END)
            if item is _END:
                return
            yield item

    async def collect(self, make_iterator: Callable[[], Iterator[T]]) -> list[T]:
        """All items of a blocking iterator; stops between items when cancelled."""
        return [item async for item in self.iterate(await self.call(make_iterator))]


class _Slot:
    def __init__(self, ticket: Ticket) -> None:
        self._ticket = ticket

    async def __aenter__(self) -> Ticket:
        await self._ticket._queue._slots.acquire()
        return self._ticket

    async def __aexit__(self, *exc: object) -> None:
        self._ticket._queue._slots.release()


# Decoding uploads (audio, images) runs here: a few at a time for the whole process, so a
# burst of uploads cannot decode dozens of files at once.
DECODE_POOL = ThreadPoolExecutor(2, thread_name_prefix="secretary-decode")
