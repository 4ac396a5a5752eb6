"""A circuit breaker shared by the fallback chains (``VOICED_STT=deepgram,google``,
``VOICED_TTS=elevenlabs,google,local``): a provider that keeps failing is skipped by every
call for a while, instead of each call paying its timeout to find out (issue 22)."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger(namespace="voiced.breaker")

#: Failures within WINDOW_S that open an engine's circuit.
FAILURES_TO_OPEN = 3
WINDOW_S = 60.0
#: How long an open circuit keeps the engine out of new requests; then one failure reopens it.
OPEN_S = 30.0


class CircuitBreaker:
    """Per engine: closed (in use), or open (skipped) for ``open_s`` after ``failures_to_open``
    failures within ``window_s``. ``kind`` (STT, TTS) starts its log lines. Pure: driven by ``clock``."""

    def __init__(self, clock: IReactorTime, failures_to_open: int = FAILURES_TO_OPEN, window_s: float = WINDOW_S,
                 open_s: float = OPEN_S, kind: str = "STT") -> None:
        self._clock = clock
        self._threshold = failures_to_open
        self._window_s = window_s
        self._open_s = open_s
        self._kind = kind
        self._failures: dict[str, list[float]] = {}
        self._open_until: dict[str, float] = {}

    def allows(self, engine: str) -> bool:
        until = self._open_until.get(engine)
        if until is None:
            return True
        if self._clock.seconds() < until:
            return False
        # Half-open: let it try again; one more failure opens it at once.
        del self._open_until[engine]
        self._failures[engine] = [self._clock.seconds()] * (self._threshold - 1)
        log.info(self._kind + "_CIRCUIT_HALF_OPEN engine={engine}: new requests try it again", engine=engine)
        return True

    def failed(self, engine: str) -> None:
        now = self._clock.seconds()
        recent = [at for at in self._failures.get(engine, []) if now - at < self._window_s] + [now]
        self._failures[engine] = recent
        if len(recent) >= self._threshold and engine not in self._open_until:
            self._open_until[engine] = now + self._open_s
            log.warn(self._kind + "_CIRCUIT_OPEN engine={engine} failures={failures} within {window:.0f} s: every "
                     "call skips it for {open:.0f} s", engine=engine, failures=len(recent), window=self._window_s,
                     open=self._open_s)

    def succeeded(self, engine: str) -> None:
        self._failures.pop(engine, None)

    def is_open(self, engine: str) -> bool:
        until = self._open_until.get(engine)
        return until is not None and self._clock.seconds() < until
