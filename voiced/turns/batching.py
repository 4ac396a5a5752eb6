"""Model inference shared by every call of a process, one batch at a time off the reactor.

A model that runs per call (a VAD window every 32 ms, a turn verdict after each pause)
costs far less per item in a batch: ``BatchRunner`` gathers what the calls submit during
one reactor iteration and runs it as one ``run_batch`` in a thread pool. At most one
batch is in flight; what is submitted meanwhile forms the next one, so the batch grows
with the load instead of the queue. Every outcome comes back on the reactor thread, in a
later reactor iteration than its ``submit``.

The runner does not own its thread pool: the service starts the pool before creating a
runner and stops it after ``BatchRunner.stop``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Generic, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

X = TypeVar("X")
Y = TypeVar("Y")


class RunnerReactor(Protocol):
    """What a runner needs of its reactor: a timer, and a way back from the pool's thread."""

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> IDelayedCall: ...

    def callFromThread(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> None: ...


class RunnerStopped(Exception):
    """The runner was stopped (the service is stopping) before this item's result came."""


class BatchResultMismatch(Exception):
    """``run_batch`` returned something else than one result per item."""


class BatchRunner(Generic[X, Y]):
    """``submit(item)`` -> a Deferred of its result; ``run_batch(items) -> results``, one
    result per item in the same order, runs in ``threadpool``."""

    def __init__(
        self,
        reactor: RunnerReactor,
        threadpool: ThreadPool,
        run_batch: Callable[[list[X]], list[Y]],
        max_batch: int,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._reactor = reactor
        self._pool = threadpool
        self._run_batch = run_batch
        self.max_batch = max_batch
        self._waiting: deque[tuple[X, Deferred[Y]]] = deque()
        self._launch_call: IDelayedCall | None = None
        self._running: list[tuple[X, Deferred[Y]]] | None = None
        self._stopped = False
        #: Batches run and items in them, for a bench's mean batch size.
        self.batches = 0
        self.items = 0

    def submit(self, item: X) -> Deferred[Y]:
        """The item's result, on the reactor thread. Cancelling the Deferred drops the item:
        left out of its batch if that has not started, its result unheard if it has."""
        # Cancelling a waiting item needs no canceller: a called Deferred is skipped at launch.
        result: Deferred[Y] = Deferred()
        if self._stopped:
            # Never synchronously: a caller's errback must not run inside its own submit.
            self._reactor.callLater(0, _fail_unless_called, result, Failure(RunnerStopped("the batch runner is stopped")))
            return result
        self._waiting.append((item, result))
        if self._launch_call is None and self._running is None:
            self._launch_call = self._reactor.callLater(0, self._launch)
        return result

    def stop(self) -> None:
        """Fail what waits and what runs with ``RunnerStopped``; later submits fail too. A batch
        already in its thread finishes there, unheard."""
        self._stopped = True
        if self._launch_call is not None and self._launch_call.active():
            self._launch_call.cancel()
        self._launch_call = None
        jobs = list(self._waiting) + (self._running or [])
        self._waiting.clear()
        stopped = Failure(RunnerStopped("the batch runner stopped"))
        for _, result in jobs:
            _fail_unless_called(result, stopped)

    def _launch(self) -> None:
        self._launch_call = None
        batch: list[tuple[X, Deferred[Y]]] = []
        while self._waiting and len(batch) < self.max_batch:
            job = self._waiting.popleft()
            if not job[1].called:  # cancelled while waiting
                batch.append(job)
        if not batch:
            return
        self._running = batch
        self.batches += 1
        self.items += len(batch)
        work = deferToThreadPool(self._reactor, self._pool, self._run_batch, [item for item, _ in batch])
        work.addBoth(self._finished, batch)

    def _finished(self, outcome: list[Y] | Failure, batch: list[tuple[X, Deferred[Y]]]) -> None:
        self._running = None
        if not isinstance(outcome, Failure):
            try:
                count = len(outcome)
            except TypeError:
                count = -1
            if count != len(batch):
                outcome = Failure(BatchResultMismatch(
                    f"run_batch returned {type(outcome).__name__} of {count} results for {len(batch)} items"))
        if isinstance(outcome, Failure):
            for _, result in batch:
                _fail_unless_called(result, outcome)
        else:
            for (_, result), value in zip(batch, outcome):
                if not result.called:  # cancelled while its batch ran
                    result.callback(value)
        # Through the reactor, not at once: what the callbacks above submit joins the next batch.
        if not self._stopped and self._waiting and self._launch_call is None:
            self._launch_call = self._reactor.callLater(0, self._launch)


def _fail_unless_called(result: Deferred[Any], failure: Failure) -> None:
    if not result.called:
        result.errback(failure)
