"""The asyncio event loop every Google speech stream lives on, in one thread of a service pool.

A synchronous gRPC stream holds a thread for its responses and wakes gRPC's own
thread for every request: two threads per call, switching under the GIL ~10 times a
second each. With ``grpc.aio`` all of a process's streams are coroutines on one loop,
and the loop runs in one worker of the service's STT thread pool from start to stop.

Crossing threads is the only cost left, so it is batched both ways: the reactor's
hand-offs (``call_soon``) queue up and wake the loop once for the lot, and results
come back with ``reactor.callFromThread``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

log = Logger()
T = TypeVar("T")

#: How long start() waits for the loop to run, and stop() for it to finish.
START_STOP_TIMEOUT_S = 10.0


class LoopStopped(RuntimeError):
    """The loop is not running (not started yet, or stopped): nothing can be handed to it."""


class AioLoop:
    """An asyncio loop in a pool thread. ``call_soon`` and ``submit`` are for the reactor
    thread (or any thread); ``run_sync`` blocks, so never call it on the reactor thread
    while it serves calls."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handoffs: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._wake_pending = False
        self._finished = threading.Event()
        #: Tasks submitted and not finished yet (the streams in progress).
        self.active = 0

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self, pool: ThreadPool) -> None:
        """Run the loop in one of ``pool``'s threads (blocks until it runs)."""
        if self._loop is not None:
            return
        started = threading.Event()
        self._finished.clear()
        pool.callInThread(self._run, started)
        if not started.wait(START_STOP_TIMEOUT_S):
            raise RuntimeError("the speech event loop did not start (is the STT thread pool running?)")

    def _run(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        loop.call_soon(started.set)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            self._loop = None
            loop.close()
            self._finished.set()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop, in order; many hand-offs share one wake-up."""
        loop = self._loop
        if loop is None:
            return  # stopped: what was for a stream has no stream any more
        self._handoffs.append((fn, args))
        # Whoever drains clears the flag before taking the queue: a hand-off that sees it
        # still set is taken by that drain, one that sees it clear schedules the next.
        if not self._wake_pending:
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # closed between the check and the call
                self._wake_pending = False

    def _drain(self) -> None:
        self._wake_pending = False
        handoffs = self._handoffs
        while handoffs:
            fn, args = handoffs.popleft()
            try:
                fn(*args)
            except Exception:
                log.failure("A hand-off to the speech event loop failed")

    def submit(self, coroutine_fn: Callable[..., Awaitable[T]], *args: Any) -> Deferred[T]:
        """Run ``coroutine_fn(*args)`` as a task on the loop; the Deferred fires on the
        reactor thread with its result or its exception."""
        d: Deferred[T] = Deferred()
        if self._loop is None:
            d.errback(Failure(LoopStopped("the speech event loop is not running")))
            return d

        def finished(task: asyncio.Task[T]) -> None:
            self.active -= 1
            if task.cancelled():
                outcome: Any = Failure(LoopStopped("the speech event loop stopped"))
            elif task.exception() is not None:
                outcome = Failure(task.exception())
            else:
                outcome = task.result()
            self._reactor.callFromThread(_fire, d, outcome)

        def begin() -> None:
            assert self._loop is not None
            self.active += 1
            self._loop.create_task(coroutine_fn(*args)).add_done_callback(finished)

        self.call_soon(begin)
        return d

    def run_sync(self, coroutine_fn: Callable[[], Awaitable[T]], timeout_s: float = START_STOP_TIMEOUT_S) -> T:
        """Run a coroutine on the loop and wait for its result (from a thread other than the loop's)."""
        loop = self._loop
        if loop is None:
            raise LoopStopped("the speech event loop is not running")

        async def wrapped() -> T:
            return await coroutine_fn()

        return asyncio.run_coroutine_threadsafe(wrapped(), loop).result(timeout_s)

    def stop(self) -> None:
        """Stop the loop: tasks still running are cancelled; returns once its thread is free."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            return  # already closing
        if not self._finished.wait(START_STOP_TIMEOUT_S):
            log.warn("the speech event loop did not stop within {timeout:.0f} s", timeout=START_STOP_TIMEOUT_S)


def _fire(d: Deferred[T], outcome: Any) -> None:
    if isinstance(outcome, Failure):
        d.errback(outcome)
    else:
        d.callback(outcome)
