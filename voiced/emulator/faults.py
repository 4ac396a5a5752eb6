"""Fault injection for the emulator: which streams and syntheses fail, with what, and when.

A ``FaultPlan`` is the operator's (or a test's) wish; a ``FaultSchedule`` numbers
the streams and syntheses started under one plan and decides, for each, whether it
fails. The decision is made once, when the stream starts, so a stream in flight
keeps its fate when the plan is replaced. Failing means ``context.abort(status,
message)`` in the server, which the real client library raises as the matching
``google.api_core.exceptions`` class (UNAVAILABLE -> ServiceUnavailable, ...).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

import grpc

#: The statuses a real Speech/TTS call can end with that a client should survive.
FAULT_STATUSES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)

#: Google's limits for one v1 streaming recognition.
GOOGLE_MAX_STREAM_S = 305.0
GOOGLE_AUDIO_TIMEOUT_S = 10.0

# What Google says with each status, so client logs read as they would in production.
_GOOGLE_TEXT = {
    grpc.StatusCode.UNAVAILABLE: "The service is currently unavailable.",
    grpc.StatusCode.INTERNAL: "Internal error encountered.",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Deadline Exceeded",
    grpc.StatusCode.ABORTED: "The operation was aborted.",
    grpc.StatusCode.OUT_OF_RANGE: "Operation was attempted past the valid range.",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "Quota exceeded.",
}


def parse_status(value: grpc.StatusCode | str) -> grpc.StatusCode:
    """A fault status from its enum or its name ("UNAVAILABLE", "unavailable")."""
    if isinstance(value, grpc.StatusCode):
        status = value
    else:
        try:
            status = grpc.StatusCode[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown gRPC status {value!r}") from None
    if status not in FAULT_STATUSES:
        names = ", ".join(s.name for s in FAULT_STATUSES)
        raise ValueError(f"fault status must be one of {names}, not {status.name}")
    return status


@dataclass(frozen=True)
class FaultPlan:
    """What to break. The default plan breaks nothing and keeps Google's limits."""

    #: The status failing streams and syntheses end with (an enum or its name).
    status: grpc.StatusCode | str = grpc.StatusCode.UNAVAILABLE
    #: Fail streams n, 2n, 3n... counted from when the plan took effect (0: never).
    every_nth: int = 0
    #: Also fail this share of streams at random (0.0 .. 1.0), drawn from ``seed``.
    fraction: float = 0.0
    seed: int | None = None
    #: A failing stream fails before its first response (0) or after K responses.
    after_responses: int = 0
    #: Added before every streaming response and every synthesis.
    latency_ms: int = 0
    #: Fail syntheses n, 2n, 3n... with ``status`` (0: never).
    tts_fail_every_nth: int = 0
    #: OUT_OF_RANGE once a stream has carried more than this much audio (audio time, not wall time).
    max_stream_s: float = GOOGLE_MAX_STREAM_S
    #: OUT_OF_RANGE when no request arrived for this long (wall time).
    audio_timeout_s: float = GOOGLE_AUDIO_TIMEOUT_S
    #: Accept every stream and take its audio, but never answer nor end it (a SIGSTOPped or
    #: wedged server): only the client's cancel or deadline ends it.
    hang: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", parse_status(self.status))
        for name in ("every_nth", "after_responses", "latency_ms", "tts_fail_every_nth"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be within 0.0 .. 1.0")
        if self.max_stream_s <= 0 or self.audio_timeout_s <= 0:
            raise ValueError("max_stream_s and audio_timeout_s must be > 0")

    @property
    def status_code(self) -> grpc.StatusCode:
        assert isinstance(self.status, grpc.StatusCode)  # normalized by __post_init__
        return self.status


@dataclass(frozen=True)
class Fault:
    """The fate of one failing stream or synthesis."""

    status: grpc.StatusCode
    #: For streams: how many responses go out before the failure.
    after_responses: int
    message: str


class FaultSchedule:
    """Numbers the streams and syntheses started under one plan; thread-safe."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self._rng = random.Random(plan.seed)
        self._streams = 0
        self._syntheses = 0

    def next_stream(self) -> tuple[int, Fault | None]:
        """Number the next stream (1, 2, ...) and decide whether it fails."""
        plan = self.plan
        with self._lock:
            self._streams += 1
            n = self._streams
            # Draw for every stream, failing or not, so one seed gives one sequence.
            drawn = plan.fraction > 0 and self._rng.random() < plan.fraction
        nth = plan.every_nth > 0 and n % plan.every_nth == 0
        if not (nth or drawn):
            return n, None
        return n, Fault(plan.status_code, plan.after_responses, _message(plan.status_code, "stream", n))

    def next_synthesis(self) -> tuple[int, Fault | None]:
        """Number the next synthesis (1, 2, ...) and decide whether it fails."""
        plan = self.plan
        with self._lock:
            self._syntheses += 1
            n = self._syntheses
        if plan.tts_fail_every_nth > 0 and n % plan.tts_fail_every_nth == 0:
            return n, Fault(plan.status_code, 0, _message(plan.status_code, "synthesis", n))
        return n, None


def _message(status: grpc.StatusCode, what: str, n: int) -> str:
    return f"{_GOOGLE_TEXT[status]} [voiced-emulator: injected fault, {what} {n}]"
