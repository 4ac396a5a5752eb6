"""How late the reactor runs: the daemon's own share of every turn, measured all the time.

A timer due every ``interval_s`` fires late by as long as the reactor was busy (or its
process was not scheduled), and every caller's audio and every reply waited as long. Each
lateness goes to a histogram; a stall past ``stall_ms`` is logged once per episode, so a
saturated worker shows in the log and in ``/metrics`` before callers notice. With the
Google engines each tick also sends a no-op to the speech loop's thread and back: the hop
every audio request and every transcript makes.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger(namespace="voiced.lag")

INTERVAL_S = 0.1
STALL_MS = 250.0

#: round_trip(done): run ``done`` on the reactor after a trip through the speech loop;
#: False when there is no loop (yet).
RoundTrip = Callable[[Callable[[], None]], bool]


class LagMonitor:
    def __init__(
        self,
        clock: IReactorTime,
        observe: Callable[[str, float], Any],  # ("reactor" | "speech_loop", milliseconds)
        round_trip: RoundTrip | None = None,
        interval_s: float = INTERVAL_S,
        stall_ms: float = STALL_MS,
    ) -> None:
        self._clock = clock
        self._observe = observe
        self._round_trip = round_trip
        self._interval_s = interval_s
        self._stall_ms = stall_ms
        self._due = 0.0
        self._timer: IDelayedCall | None = None
        self._trip_sent_at: float | None = None  # the round trip out now, if any
        self._loop_stalled = False  # the trip out now has been logged as a stall
        self._stalled = False

    def start(self) -> None:
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _schedule(self) -> None:
        self._due = self._clock.seconds() + self._interval_s
        self._timer = self._clock.callLater(self._interval_s, self._tick)

    def _tick(self) -> None:
        now = self._clock.seconds()
        lag_ms = max(0.0, (now - self._due) * 1000)
        self._observe("reactor", lag_ms)
        if lag_ms >= self._stall_ms and not self._stalled:
            log.warn("REACTOR_STALL lag_ms={lag:.0f}: the reactor ran this late, and so did every call's audio "
                     "(too many calls for this process, or the machine is short of CPU)", lag=lag_ms)
        self._stalled = lag_ms >= self._stall_ms
        if self._trip_sent_at is not None:
            # A loop that hangs sends nothing back: the trip still out is what shows it.
            waited_ms = (now - self._trip_sent_at) * 1000
            if waited_ms >= self._stall_ms and not self._loop_stalled:
                self._loop_stalled = True
                log.warn("SPEECH_LOOP_STALL waited_ms={ms:.0f}: the Google speech loop has not run a no-op "
                         "this long; every call's audio to Google and transcripts back wait as long", ms=waited_ms)
        elif self._round_trip is not None:
            self._trip_sent_at = now
            if not self._round_trip(self._trip_done):
                self._trip_sent_at = None
        self._schedule()

    def _trip_done(self) -> None:
        if self._trip_sent_at is not None:
            self._observe("speech_loop", (self._clock.seconds() - self._trip_sent_at) * 1000)
        self._trip_sent_at, self._loop_stalled = None, False
