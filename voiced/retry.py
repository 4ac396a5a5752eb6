"""Exponential backoff and a Deferred retry loop, both driven by an injected clock.

Waiting happens in the reactor (``deferLater``), never in a sleeping thread, so a
retry costs nothing while it waits and cancelling it (the caller hung up) is free.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delays of ``initial_s`` doubling (``factor``) up to ``max_s``, for at most
    ``attempts`` retries after the first failure.

    ``jitter`` is a fraction: each delay is scaled by a uniform factor in
    ``[1 - jitter, 1 + jitter]`` (then capped), so that calls failing together do
    not all come back in the same instant. Tests pass ``jitter=0``.
    """

    initial_s: float
    max_s: float
    attempts: int
    factor: float = 2.0
    jitter: float = 0.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s:
            raise ValueError("backoff needs 0 <= initial_s <= max_s")
        if self.attempts < 0 or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs attempts >= 0, factor >= 1, 0 <= jitter < 1")

    @classmethod
    def from_ms(cls, initial_ms: int, max_ms: int, attempts: int, jitter: float = 0.0,
                rng: random.Random | None = None) -> "Backoff":
        return cls(initial_ms / 1000.0, max_ms / 1000.0, attempts, jitter=jitter, rng=rng or random.Random())

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError("retry attempts are numbered from 1")
        try:
            base = min(self.initial_s * self.factor ** (attempt - 1), self.max_s)
        except OverflowError:
            base = self.max_s
        if self.jitter:
            base *= 1.0 + self.rng.uniform(-self.jitter, self.jitter)
        return min(base, self.max_s)

    def schedule(self) -> list[float]:
        """Every delay of one failure's retries, in order (for logs and tests)."""
        return [self.delay(n) for n in range(1, self.attempts + 1)]


def retry(
    clock: IReactorTime,
    operation: Callable[[int], Deferred[T]],
    policy: Backoff,
    is_retryable: Callable[[Failure], bool],
    on_retry: Callable[[int, float, Failure], None] = lambda attempt, delay, failure: None,
) -> Deferred[T]:
    """Run ``operation(0)``; while it fails retryably, wait ``policy.delay(n)`` and
    run ``operation(n)``, for n = 1 .. ``policy.attempts``.

    ``on_retry(n, delay_s, failure)`` is called before each wait. The result is the
    first success, or the last failure (a non-retryable one at once). Cancelling the
    returned Deferred cancels the pending wait or operation; a cancelled operation
    is never retried.
    """

    async def run() -> Any:
        attempt = 0
        while True:
            try:
                return await operation(attempt)
            except Exception:
                failure = Failure()
                if failure.check(CancelledError) or attempt >= policy.attempts or not is_retryable(failure):
                    raise
            attempt += 1
            delay = policy.delay(attempt)
            on_retry(attempt, delay, failure)
            await deferLater(clock, delay)

    return Deferred.fromCoroutine(run())
