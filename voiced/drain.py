"""The graceful stop, as FreeSWITCH's ``shutdown elegant`` and Asterisk's ``core stop
gracefully`` do it: stop taking calls, let the ones in progress finish, then exit.

On the first SIGTERM (or SIGINT) the service turns not-ready (``/health/ready`` 503,
new ``/media`` upgrades refused 503) while its ports stay open, so the orchestrator's
probes see it draining. Calls in progress go on. When the last one ends, or
``VOICED_DRAIN_TIMEOUT_S`` has passed and the calls still there have heard a cached
goodbye (bounded by ``GOODBYE_GRACE_S``), the reactor is stopped: twistd then runs
``stopService`` and exits 0 (it exits 143 only when the reactor's own SIGTERM handler
stopped it). A second signal stops at once; the calls still open get a close (1000).
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

log = Logger(namespace="voiced.drain")

# After the drain timeout: how long the goodbye may take to play before the stop goes on anyway.
GOODBYE_GRACE_S = 15.0


class DrainingCall(Protocol):
    def drain_goodbye(self) -> None: ...


class Drain:
    """``calls`` is the live collection of calls in progress (the service's, never copied)."""

    def __init__(self, calls: Collection[DrainingCall], clock: Any, timeout_s: float, stop: Callable[[], None],
                 goodbye_grace_s: float = GOODBYE_GRACE_S) -> None:
        self._calls = calls
        self._clock = clock
        self._timeout_s = timeout_s
        self._stop = stop
        self._goodbye_grace_s = goodbye_grace_s
        self.draining = False
        self.started_at: float | None = None
        self._timer: IDelayedCall | None = None
        self._stopped = False

    def on_signal(self, signal_name: str) -> None:
        """The first stop signal drains; a second one stops at once."""
        if self.draining:
            log.warn("DRAIN_ABORTED signal={signal}: stopping now, {calls} calls get a close", signal=signal_name,
                     calls=len(self._calls))
            self._finish()
            return
        self.begin(signal_name)

    def begin(self, why: str) -> None:
        self.draining = True
        self.started_at = self._clock.seconds()
        log.info("DRAIN_START signal={signal} active_calls={calls} timeout_s={timeout}: not accepting calls; "
                 "a second signal stops at once", signal=why, calls=len(self._calls),
                 timeout=self._timeout_s)
        if not self._calls:
            self._finish()
            return
        self._timer = self._clock.callLater(self._timeout_s, self._timed_out)

    def call_ended(self) -> None:
        if self.draining and not self._calls:
            self._finish()

    def _timed_out(self) -> None:
        calls = list(self._calls)
        log.warn("DRAIN_TIMEOUT after {timeout} s: {calls} calls still in progress hear a goodbye",
                 timeout=self._timeout_s, calls=len(calls))
        for call in calls:
            call.drain_goodbye()
        self._timer = self._clock.callLater(self._goodbye_grace_s, self._finish)

    def _finish(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        waited = self._clock.seconds() - (self.started_at or self._clock.seconds())
        log.info("DRAIN_DONE after {waited} s: stopping, {calls} calls left", waited=round(waited, 1),
                 calls=len(self._calls))
        self._stop()
