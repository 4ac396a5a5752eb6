"""Silero VAD behind the voice-activity port, every call's windows batched off the reactor.

The model is process-wide: one onnxruntime session (one thread) and one ``BatchRunner``
in the service's thread pool. Each call's stream keeps what is its own: the model's
recurrent state and the last 32 samples (the context the model sees before a window). It
cuts the call's 20 ms frames (160 samples at 8 kHz) into Silero's 32 ms windows (256
samples) and submits each window, with its context and state, to the runner. A frame's
probability is that of the window holding its last sample, so one window answers one or
two frames, and a frame whose window is not complete yet waits for it.

The model is Silero's full ONNX export (``input`` [B, context + window], ``state``
[2, B, 128], ``sr``) as the pipecat-ai wheel ships it: 8 kHz natively, and a whole batch
of calls in one ``session.run``. (faster-whisper's copy is another export: 16 kHz only,
one stream per run, about 3x the CPU per window; it cannot batch calls.)

At 8 kHz a long stretch of silence or line noise leaves the recurrent state deaf to the
speech that follows (seconds late, found by Pipecat and seen here on both exports); as
Pipecat does, a stream resets its state every ~2 s of audio during clear non-speech.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from functools import partial
from typing import Any, Protocol

import numpy as np
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from voiced.audio import SAMPLE_RATE
from voiced.lifecycle import note_construction
from voiced.options import default
from voiced.turns.batching import BatchRunner, RunnerReactor
from voiced.turns.vad import Deliver

log = Logger(namespace="voiced.turns.silero")

FRAME_SAMPLES = SAMPLE_RATE * 20 // 1000  # the port's 20 ms frame
WINDOW_SAMPLES = 256  # Silero's window at 8 kHz (32 ms)
CONTEXT_SAMPLES = 32  # what the model sees of the previous window
INPUT_SAMPLES = CONTEXT_SAMPLES + WINDOW_SAMPLES
FRAME_BYTES = 2 * FRAME_SAMPLES
WINDOW_BYTES = 2 * WINDOW_SAMPLES
CONTEXT_BYTES = 2 * CONTEXT_SAMPLES
STATE_SHAPE = (2, 128)  # per stream: the LSTM's h and c

#: A state reset is due after this many windows (~2 s of audio) ...
RESET_INTERVAL_WINDOWS = 63
#: ... and happens once this many windows in a row (~160 ms) scored below QUIET_PROBABILITY.
QUIET_WINDOWS = 5
QUIET_PROBABILITY = 0.1

#: Windows in one session.run at most: ~15 ms of one core at 8 kHz with the full export.
DEFAULT_MAX_BATCH = 512

#: Where the installed wheels keep a Silero export: (package, path inside it).
PIPECAT_SILERO = ("pipecat", "audio/vad/data/silero_vad.onnx")

_ZERO_STATE = np.zeros(STATE_SHAPE, dtype=np.float32)
_ZERO_STATE.flags.writeable = False


def packaged_file(package: str, relative: str) -> str:
    """The path of a file inside an installed package, found without importing the package
    (pipecat's or faster-whisper's import would pull in far more than a file's location)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {package} package is not installed: no {relative} from it")
    for base in spec.submodule_search_locations:
        path = os.path.join(base, relative)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"the installed {package} package has no {relative}")


class SileroModel(Protocol):
    path: str

    def infer(self, audio: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``audio`` [B, INPUT_SAMPLES] float32 at 8 kHz (context then window), ``states``
        [B, 2, 128] -> (speech probabilities [B], the next states [B, 2, 128])."""


class _FullExport:
    def __init__(self, session: Any, path: str) -> None:
        self._session = session
        self.path = path
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def infer(self, audio: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        state = np.ascontiguousarray(states.transpose(1, 0, 2))  # the model's [2, B, 128]
        probabilities, next_state = self._session.run(None, {"input": audio, "state": state, "sr": self._sr})
        return probabilities[:, 0], next_state.transpose(1, 0, 2)


_models: dict[str, SileroModel] = {}
_models_lock = threading.Lock()


def load_model(path: str | None = None) -> SileroModel:
    """The Silero export at ``path`` (pipecat-ai's by default), loaded once per process."""
    path = os.path.realpath(path if path is not None else packaged_file(*PIPECAT_SILERO))
    with _models_lock:
        model = _models.get(path)
        if model is None:
            model = _models[path] = _open_model(path)
    return model


def _open_model(path: str) -> SileroModel:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no Silero VAD model at {path}")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One thread: the batch runner's; more would fight the reactor for the cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if set(inputs) != {"input", "state", "sr"}:
        raise ValueError(f"{path} is not a Silero VAD export voiced knows (inputs {inputs})")
    note_construction("vad_silero_model")
    return _FullExport(session, path)


def score_windows(model: SileroModel, items: list[tuple[bytes, np.ndarray]]) -> list[tuple[float, np.ndarray]]:
    """The batch runner's job, in its thread: each item is a stream's window (context then
    window, PCM16 little-endian) and its state; each result its probability and next state."""
    audio = np.frombuffer(b"".join([window for window, _ in items]), dtype="<i2")
    audio = audio.reshape(len(items), INPUT_SAMPLES).astype(np.float32) * np.float32(1 / 32768)
    probabilities, states = model.infer(audio, np.stack([state for _, state in items]))
    # Each stream keeps its own row: a view would keep the whole batch's array alive for as
    # long as any of its streams waits (a call on hold).
    return [(probability, state.copy()) for probability, state in zip(probabilities.tolist(), states)]


class SileroStream:
    """One call's windows, state and frames waiting for a probability; reactor thread only."""

    def __init__(self, runner: BatchRunner[tuple[bytes, np.ndarray], tuple[float, np.ndarray]],
                 deliver: Deliver, call_id: str | None) -> None:
        self._runner = runner
        self._deliver = deliver
        self._call_id = call_id
        self._samples = bytearray()  # not yet in a window
        self._context = bytes(CONTEXT_BYTES)
        self._state: np.ndarray = _ZERO_STATE
        # A window needs the state its predecessor leaves: one in flight per stream, the
        # rest (a carrier's burst of frames) wait here.
        self._in_flight: Deferred[tuple[float, np.ndarray]] | None = None
        self._queued: list[bytes] = []
        self._frames_delivered = 0
        self._windows_scored = 0
        self._windows_since_reset = 0
        self._quiet_windows = 0
        self._closed = False
        self._failure_logged = False

    def push(self, pcm16: bytes) -> float | None:
        if len(pcm16) != FRAME_BYTES:
            raise ValueError(f"a 20 ms frame at 8 kHz is {FRAME_BYTES} bytes of PCM16, got {len(pcm16)}")
        if self._closed:
            return None
        samples = self._samples
        samples += pcm16
        if len(samples) >= WINDOW_BYTES:  # a 320-byte frame completes at most one window
            window = self._context + samples[:WINDOW_BYTES]
            del samples[:WINDOW_BYTES]
            self._context = window[-CONTEXT_BYTES:]
            if self._in_flight is None:
                self._submit(window)
            else:
                self._queued.append(window)
        return None

    def close(self) -> None:
        self._closed = True
        self._queued.clear()
        self._samples.clear()
        if self._in_flight is not None:
            self._in_flight.cancel()

    def _submit(self, window: bytes) -> None:
        result = self._runner.submit((window, self._state))
        self._in_flight = result  # before the callbacks: they may clear it
        result.addCallbacks(self._scored, self._failed)

    def _scored(self, result: tuple[float, np.ndarray]) -> None:
        probability, state = result
        self._windows_since_reset += 1
        self._quiet_windows = self._quiet_windows + 1 if probability < QUIET_PROBABILITY else 0
        if self._windows_since_reset >= RESET_INTERVAL_WINDOWS and self._quiet_windows >= QUIET_WINDOWS:
            state = _ZERO_STATE
            self._windows_since_reset = 0
        self._state = state
        self._window_done(probability)

    def _failed(self, failure: Failure) -> None:
        if self._closed:
            return  # our own cancel, or a result nobody waits for any more
        if not self._failure_logged:
            self._failure_logged = True
            log.warn("VAD_FAILED vad=silero call={call_id} error={error}: its frames get probability 0.0 while "
                     "the model fails (logged once per call)", call_id=self._call_id or "-",
                     error=f"{failure.type.__name__}: {failure.getErrorMessage()}")
        self._window_done(0.0)  # the state stays as it was before the lost window

    def _window_done(self, probability: float) -> None:
        self._in_flight = None
        self._windows_scored += 1
        due = self._windows_scored * WINDOW_SAMPLES // FRAME_SAMPLES  # frames ending in this window or before
        count = due - self._frames_delivered
        self._frames_delivered = due
        if self._queued:
            # Before delivering: a deliver that raises must not stall the stream.
            self._submit(self._queued.pop(0))
        deliver = self._deliver
        for _ in range(count):
            if self._closed:  # the call ended in an earlier deliver
                return
            deliver(probability)


class SileroVoiceActivity:
    """Silero VAD for every call of the process (see the module's docstring).

    The service creates it once, after starting ``threadpool`` (one thread is enough: the
    runner keeps one batch in flight), and calls ``stop`` before stopping the pool.
    Loading the model (~50 ms) blocks, once per process and model file.
    """

    name = "silero"

    def __init__(self, reactor: RunnerReactor, threadpool: ThreadPool, threshold: float = default("vad_threshold"),
                 model_path: str | None = None, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"a Silero probability threshold is between 0 and 1 (exclusive), got {threshold}")
        self.threshold = threshold
        self.model = load_model(model_path)
        self.runner: BatchRunner[tuple[bytes, np.ndarray], tuple[float, np.ndarray]] = BatchRunner(
            reactor, threadpool, partial(score_windows, self.model), max_batch)

    def open(self, deliver: Deliver, call_id: str | None = None) -> SileroStream:
        """A call's stream; ``call_id`` names the call in the one log line a model failure gives."""
        return SileroStream(self.runner, deliver, call_id)

    def stop(self) -> None:
        """The service is stopping: pending windows fail (their frames get 0.0), no more run."""
        self.runner.stop()
