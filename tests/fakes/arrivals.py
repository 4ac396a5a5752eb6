"""What a fake server received, in order (``Arrivals``): a list a test can also wait on.

A test asks for the n-th request (``nth``) before or after it comes; the server appends
each one and then calls ``notify``, at the point its own order of work says the request
has arrived (after choosing its answer, say), so no waiter sees it half-handled.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from twisted.internet.defer import Deferred, succeed

T = TypeVar("T")


class Arrivals(list, Generic[T]):
    def __init__(self) -> None:
        super().__init__()
        self._waiters: dict[int, list[Deferred[T]]] = {}

    def nth(self, index: int) -> Deferred[T]:
        """Item number ``index`` (from 0), now or once it arrives."""
        if index < len(self):
            return succeed(self[index])
        waiter: Deferred[T] = Deferred()
        self._waiters.setdefault(index, []).append(waiter)
        return waiter

    def notify(self) -> None:
        """The last item appended has arrived: whoever waits for it gets it."""
        for waiter in self._waiters.pop(len(self) - 1, []):
            waiter.callback(self[-1])
