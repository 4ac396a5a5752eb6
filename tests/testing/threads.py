"""Thread pools on a Clock: jobs run on the test's thread when the test says, and report back through
callFromThread as a real reactor's waker does."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.task import Clock
from twisted.python.failure import Failure


class ThreadedClock(Clock):
    """A Clock that is also a reactor a thread pool reports back to: ``callFromThread``
    runs its call in the next iteration, as a real reactor's waker does."""

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.callLater(0, f, *args, **kw)


class ManualThreadPool:
    """``callInThreadWithCallback`` as ThreadPool speaks it, but each job runs (on the test's
    thread) only when the test says so: a batch in flight is a job not yet run."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[bool, Any], None], Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def callInThreadWithCallback(self, on_result: Callable[[bool, Any], None], f: Callable[..., Any],
                                 *args: Any, **kw: Any) -> None:
        self.jobs.append((on_result, f, args, kw))

    def run_next(self) -> None:
        on_result, f, args, kw = self.jobs.pop(0)
        try:
            result = f(*args, **kw)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


    def fail_all(self, error: BaseException) -> None:
        """The jobs waiting die in their thread with ``error`` (as ThreadPool reports a raise)."""
        while self.jobs:
            on_result = self.jobs.pop(0)[0]
            try:
                raise error
            except BaseException:
                on_result(False, Failure())


def settle(clock: Clock, pool: ManualThreadPool) -> None:
    """Run reactor iterations and pool jobs until nothing is left to do."""
    while clock.getDelayedCalls() or pool.jobs:
        clock.advance(0)
        while pool.jobs:
            pool.run_next()
        clock.advance(0)
