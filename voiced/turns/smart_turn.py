"""Smart Turn v3.2 (Pipecat's semantic end-of-turn model, BSD-2) as synchronous batch inference.

The ONNX file ships inside the ``pipecat-ai`` wheel; voiced finds it on disk and never imports
``pipecat`` (that would pull in pipecat's whole runtime). ``SmartTurnInference.run_batch`` is
what a ``BatchRunner`` calls in its thread pool: blocking, CPU-bound, never on the reactor.

Per utterance, as pipecat's ``LocalSmartTurnAnalyzerV3`` does it: PCM16 -> float, resample to
16 kHz (soxr HQ), keep the last 8 s (zero-padded at the start when shorter), Whisper log-mel
features, and the model's sigmoid output is P(the turn is complete).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from typing import Sequence

import numpy as np
import soxr
from twisted.logger import Logger

from voiced.audio import SAMPLE_RATES
from voiced.turns.whisper_features import RATE, WINDOW_SAMPLES, log_mel

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
#: Where the file sits inside the installed ``pipecat`` package.
MODEL_SUBPATH = ("audio", "turn", "smart_turn", "data", MODEL_FILE)
#: The file in pipecat-ai 1.14.0 (8,679,182 bytes); another version of the wheel may carry
#: another model under the same name, with other numbers.
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
INSTALL_HINT = "pip install pipecat-ai==1.14.0"

log = Logger(namespace="voiced.turns")

# soxr's filter needs some input before the kept window to settle; 50 ms is ample at HQ.
_RESAMPLE_MARGIN_S = 0.05


class SmartTurnModelError(RuntimeError):
    """The model file is missing or not the one voiced was checked against: a start-up error."""


class TurnAudioError(ValueError):
    """Audio the model cannot take (odd byte count, unsupported rate, nothing at all)."""


def bundled_model_path() -> str:
    """The ONNX file inside the installed pipecat-ai package, found without importing pipecat."""
    # find_spec on a top-level name locates the package without running its __init__.
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise SmartTurnModelError(
            f"the Smart Turn model ({MODEL_FILE}) ships in the pipecat-ai wheel, which is not installed: "
            f"run `{INSTALL_HINT}` or give the model file's path"
        )
    for location in spec.submodule_search_locations:
        candidate = os.path.join(location, *MODEL_SUBPATH)
        if os.path.isfile(candidate):
            return candidate
    raise SmartTurnModelError(
        f"pipecat is installed but has no {'/'.join(MODEL_SUBPATH)}: run `{INSTALL_HINT}` or give the model file's path"
    )


def verified_model_path(path: str | None = None, expected_sha256: str | None = MODEL_SHA256) -> str:
    """The model file to load: ``path``, or the bundled one; its SHA-256 must be ``expected_sha256``
    (None skips the check, for an operator's own build of the model)."""
    path = path or bundled_model_path()
    try:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as e:
        raise SmartTurnModelError(f"cannot read the Smart Turn model {path}: {e.strerror}; run `{INSTALL_HINT}`") from e
    if expected_sha256 is not None and digest != expected_sha256:
        raise SmartTurnModelError(
            f"{path} is not the Smart Turn v3.2 model voiced was checked against "
            f"(sha256 {digest}, expected {expected_sha256}): run `{INSTALL_HINT}`"
        )
    return path


def check_turn_audio(pcm16: bytes, sample_rate: int) -> None:
    """Raise ``TurnAudioError`` for audio ``run_batch`` would refuse (cheap: call it before queueing,
    so one bad utterance fails alone rather than its whole batch)."""
    if not isinstance(pcm16, (bytes, bytearray, memoryview)):
        raise TurnAudioError(f"PCM16 audio must be bytes, not {type(pcm16).__name__}")
    if sample_rate not in SAMPLE_RATES:
        raise TurnAudioError(f"sample rate {sample_rate} Hz not supported (one of {SAMPLE_RATES})")
    if len(pcm16) % 2:
        raise TurnAudioError(f"PCM16 audio of {len(pcm16)} bytes is not whole 16-bit samples")
    if not pcm16:
        raise TurnAudioError("no audio: an utterance needs at least one sample")


def model_window(pcm16: bytes, sample_rate: int) -> np.ndarray:
    """The 8 s the model hears: the utterance's end at 16 kHz, float32, zero-padded at the start."""
    check_turn_audio(pcm16, sample_rate)
    # Resample only the tail (plus a margin for the filter to settle), not a long utterance.
    keep = int((WINDOW_SAMPLES / RATE + _RESAMPLE_MARGIN_S) * sample_rate)
    samples = np.frombuffer(pcm16, dtype="<i2")[-keep:].astype(np.float32) / 32768.0
    if sample_rate != RATE:
        samples = soxr.resample(samples, sample_rate, RATE, quality="HQ")
    samples = samples[-WINDOW_SAMPLES:]
    return np.pad(samples, (WINDOW_SAMPLES - samples.size, 0))


class SmartTurnInference:
    """One ONNX session, loaded once; ``run_batch`` is thread-safe (onnxruntime sessions are)."""

    name = "smart-turn-v3.2"

    def __init__(
        self,
        model_path: str | None = None,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        expected_sha256: str | None = MODEL_SHA256,
    ) -> None:
        import onnxruntime as ort  # only a process that uses the model pays for importing it

        self.model_path = verified_model_path(model_path, expected_sha256)
        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(self.model_path, sess_options=options, providers=["CPUExecutionProvider"])
        (model_input,) = self._session.get_inputs()
        self._input_name = model_input.name
        # A symbolic first dimension ('s6' in v3.2) takes any batch in one run; a fixed one does not.
        self.batches_natively = not isinstance(model_input.shape[0], int)
        if not self.batches_natively:
            log.warn("{path}: batch dimension fixed at {size}; running each utterance on its own",
                     path=self.model_path, size=model_input.shape[0])

    def run_batch(self, items: Sequence[tuple[bytes, int]]) -> list[float]:
        """P(turn complete) for each (mono PCM16 LE utterance so far, its sample rate)."""
        if not items:
            return []
        return self.probabilities(self.features(items))

    def features(self, items: Sequence[tuple[bytes, int]]) -> np.ndarray:
        """The model's input for each utterance: (len(items), 80, 800) float32."""
        return np.stack([log_mel(model_window(pcm16, rate)) for pcm16, rate in items])

    def probabilities(self, features: np.ndarray) -> list[float]:
        """The model on a stack of features: one ``session.run`` when the batch dimension allows it."""
        if self.batches_natively:
            (out,) = self._session.run(None, {self._input_name: features})
        else:
            out = np.concatenate([self._session.run(None, {self._input_name: f[None]})[0] for f in features])
        return [float(p) for p in np.asarray(out).reshape(len(features))]

    def predict_blocking(self, pcm16: bytes, sample_rate: int) -> float:
        """One utterance alone (benches, tests, warm-up)."""
        return self.run_batch([(pcm16, sample_rate)])[0]
