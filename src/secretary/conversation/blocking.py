"""Running blocking engine work from the turn's async tasks, cancellably."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from secretary.conversation.stages import Cancel, TurnCancelled

T = TypeVar("T")
_END: Any = object()


class Lane:
    """A small thread pool for one stage: its blocking calls queue here, so a stage never
    takes every core, and the stages of one turn overlap (speech of sentence two while the
    avatar renders sentence one)."""

    def __init__(self, name: str, workers: int = 1) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix=f"turn-{name}")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The thread cannot be interrupted; wait for it so the lane is free again
            # before the next turn's work lands on it (each piece is short: a sentence, a
            # frame).
            await asyncio.wait([future])
            if not future.cancelled():
                future.exception()  # retrieved: its error belongs to the cancelled turn
            raise

    async def iterate(self, make: Callable[[], Iterator[T]], cancel: Cancel) -> AsyncIterator[T]:
        """Pull a blocking iterator item by item in the lane; stop when cancelled."""
        iterator = await self.call(make)
        try:
            while not cancel:
                try:
                    item = await self.call(next, iterator, _END)
                except TurnCancelled:
                    return  # the work noticed the cancellation between two pieces
                if item is _END:
                    return
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                # Closing a generator runs its cleanup; do it in the lane, not the loop.
                await asyncio.shield(asyncio.get_running_loop().run_in_executor(
                    self.executor, close))

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def check(cancel: Cancel) -> None:
    """Inside blocking work: stop here if the turn was cancelled."""
    if cancel:
        raise TurnCancelled(cancel.reason)
