"""What the emulator's Speech and Text-to-Speech servicers share: refusals, limits, stats."""

from __future__ import annotations

import re
import threading

import grpc

MIN_RATE_HZ, MAX_RATE_HZ = 8000, 48000
LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class EmulatorStats:
    """Counters, updated under one lock; ``streams_started`` = failed + completed + cancelled + active."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.streams_started = 0
        self.streams_failed = 0  # ended by the server with an error status (faults, limits, bad requests)
        self.streams_completed = 0  # ended with OK (client half-close, or single utterance done)
        self.streams_cancelled = 0  # cancelled by the client (deadline, cancel, connection gone)
        self.responses_sent = 0
        self.syntheses = 0  # successful SynthesizeSpeech calls
        self.syntheses_failed = 0
        self.active_streams = 0

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class Rejected(Exception):
    """A request the service refuses: ends the call with ``status``."""

    def __init__(self, status: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def invalid(message: str) -> Rejected:
    return Rejected(grpc.StatusCode.INVALID_ARGUMENT, message)
