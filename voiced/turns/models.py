"""The process-wide turn-taking models behind their ports, as the service builds them:
each loads once (in the warm-up, after any fork: ONNX sessions are not fork-safe) and
runs batched across calls in the service's turn pool (``voiced.turns.batching``)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.python.threadpool import ThreadPool

from voiced.turns.batching import BatchRunner
from voiced.turns.smart_turn import SmartTurnInference, TurnAudioError, check_turn_audio, verified_model_path

#: Verdicts asked for at once (pauses of many calls in the same moment).
SMART_TURN_MAX_BATCH = 8


class SmartTurnModel:
    """Smart Turn v3.2 as a ``TurnModel`` (``voiced.turns.semantic``)."""

    name = "smart-turn"

    def __init__(self, reactor: Any, pool: ThreadPool, inference: SmartTurnInference) -> None:
        self._runner: BatchRunner[tuple[bytes, int], float] = BatchRunner(
            reactor, pool, inference.run_batch, SMART_TURN_MAX_BATCH)

    @classmethod
    def load(cls, reactor: Any, pool: ThreadPool, path: str = "") -> "SmartTurnModel":
        """Blocking (the model file is read and checked): call it in a thread."""
        return cls(reactor, pool, SmartTurnInference(verified_model_path(path or None)))

    def predict(self, pcm16: bytes, sample_rate: int) -> Deferred[float]:
        try:
            check_turn_audio(pcm16, sample_rate)  # one bad item must not fail its whole batch
        except TurnAudioError as e:
            return fail(e)
        return self._runner.submit((pcm16, sample_rate))

    def stop(self) -> None:
        self._runner.stop()
