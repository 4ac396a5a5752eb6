"""Connections in memory on a Clock: MemoryNetwork runs whole calls and HTTP exchanges without
wall-clock time."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter
from twisted.trial.unittest import TestCase


class MemoryNetwork:
    """A reactor whose TCP connections are made in memory and whose time is a Clock, and the
    loop that runs it: bytes move whenever they can, and time moves on only when nothing else
    can, straight to the next timer. A call on it takes no wall-clock time and comes out the
    same on any machine, however loaded. Autobahn keeps its timers (handshake and close
    timeouts) on it too while the test runs."""

    PORT = 8000  # what a server listens on in memory: no socket is opened

    def __init__(self, test: TestCase, start: float = 50.0) -> None:
        import txaio

        self.reactor = MemoryReactorClock()
        self.reactor.advance(start)
        self._completer = ConnectionCompleter(self.reactor)
        self._pumps: list[Any] = []
        test.patch(txaio.config, "loop", self.reactor)

    def settle(self) -> None:
        """Complete pending connections and move bytes until nothing moves at this instant."""
        moved = True
        while moved:
            moved = False
            while (pump := self._completer.succeedOnce()) is not None:
                self._pumps.append(pump)
                moved = True
            for pump in self._pumps:
                moved = pump.flush() or moved

    def run(self, d: Deferred[Any], limit_s: float = 600.0) -> Any:
        """Run until ``d`` fires; its result (or its failure, raised)."""
        deadline = self.reactor.seconds() + limit_s
        while True:
            self.settle()
            if d.called:
                break
            due = [call.getTime() for call in self.reactor.getDelayedCalls()]
            if not due:
                raise AssertionError("nothing left to happen, and the Deferred has not fired")
            if min(due) > deadline:
                raise AssertionError(f"still running after {limit_s} s on the clock")
            self.reactor.advance(max(0.0, min(due) - self.reactor.seconds()))
        results: list[Any] = []
        d.addBoth(results.append)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]
