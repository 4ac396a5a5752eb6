"""The port of a semantic end-of-turn model: it hears the caller's utterance so far and
says how likely the turn is complete.

A model is process-wide (loaded once by the service, which owns its thread pool from
``startService`` to ``stopService``); inference never runs on the reactor, and a
prediction's Deferred fires on the reactor thread.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred


class TurnModel(Protocol):
    name: str

    def predict(self, pcm16: bytes, sample_rate: int) -> Deferred[float]:
        """P(the turn is complete) for an utterance's audio (mono PCM16 little-endian at
        ``sample_rate``; the model uses as much of its end as it needs)."""
