"""What the emulator recognizes, and when: endpointing like Google's, text from a Recognizer.

A ``RecognitionSession`` is one stream's recognition. It takes 8 kHz PCM16 in any
chunk size, cuts it into 20 ms frames, and segments it with webrtcvad the way
Google's endpointer behaves on phone audio: speech starts after 60 ms of voiced
frames (with a 300 ms pre-roll kept for the transcriber), and ends after 300 ms of
silence. While speech goes on it produces an interim result every 700 ms of audio
(audio time, so a test that sends faster than real time gets the same results),
by transcribing the segment so far; at the end of the segment, or when the client
half-closes, it produces the final. It knows nothing of gRPC: the server turns its
outputs into ``StreamingRecognizeResponse`` messages.

The text itself comes from a ``Recognizer``: local Whisper by default, or a
scripted one that a test injects.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import webrtcvad

from voiced.audio import FRAME_MS, SAMPLE_RATE, pcm16_to_ulaw
from voiced.language import primary

if TYPE_CHECKING:
    from voiced.stt.local import WhisperTranscriber

FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # PCM16
SPEECH_START_MS = 60
SPEECH_END_MS = 300
PREROLL_MS = 300
INTERIM_EVERY_MS = 700
# webrtcvad aggressiveness 0..3: 2 ignores line hiss yet keeps soft consonants.
VAD_MODE = 2


class Recognizer(Protocol):
    """Speech to text for one segment; called from the server's worker threads.

    A recognizer may also have ``supports_language(language_code) -> bool``, asked
    once at each stream's start; one without it serves every language.
    """

    def transcribe(self, ulaw: bytes, language_code: str) -> str:
        """8 kHz mu-law -> text ("" when nothing was said)."""


def serves_language(recognizer: Recognizer, language_code: str) -> bool:
    """Whether ``recognizer`` can transcribe ``language_code`` (may load its model: blocking)."""
    supports = getattr(recognizer, "supports_language", None)
    return True if supports is None else bool(supports(language_code))


def unsupported_language_message(language_code: str) -> str:
    # Google's words when a model lacks a language, then why, and the way out.
    return (
        f"The requested model is currently not supported for language : {language_code}. "
        "[voiced-emulator: its Whisper model does not know this language (the bundled tiny.en knows "
        "English only); start it with --whisper-model DIR of a multilingual model, or --scripted]"
    )


class WhisperRecognizer:
    """Local Whisper (voiced.stt.local), loaded on first use and shared by every stream
    and every language: a language the model lacks is refused at the stream's start,
    never transcribed as English nonsense. English needs no loading to say yes: every
    Whisper model knows it.
    """

    def __init__(self, model_path: str = "", cpu_threads: int = 1) -> None:
        self._model_path = model_path
        self._cpu_threads = cpu_threads
        self._lock = threading.Lock()
        self._whisper: WhisperTranscriber | None = None

    def supports_language(self, language_code: str) -> bool:
        return primary(language_code) == "en" or self._model().knows(language_code)

    def transcribe(self, ulaw: bytes, language_code: str) -> str:
        if not self.supports_language(language_code):
            raise ValueError(unsupported_language_message(language_code))
        return self._model().transcribe_blocking(ulaw, language_code)

    def _model(self) -> WhisperTranscriber:
        with self._lock:
            if self._whisper is None:
                # Imported here: faster-whisper is heavy, and a scripted recognizer never needs it.
                from voiced.stt.local import WhisperTranscriber

                self._whisper = WhisperTranscriber(model_path=self._model_path, cpu_threads=self._cpu_threads)
            return self._whisper


@dataclass(frozen=True)
class Transcript:
    text: str
    is_final: bool
    #: Audio time from the start of the stream to the end of what was transcribed.
    end_ms: int


@dataclass(frozen=True)
class SpeechEvent:
    #: A ``StreamingRecognizeResponse.SpeechEventType`` name.
    kind: str
    at_ms: int


Output = Transcript | SpeechEvent


class RecognitionSession:
    """One stream's endpointing and recognition; used by one thread at a time."""

    def __init__(
        self,
        recognizer: Recognizer,
        language_code: str,
        interim_results: bool = True,
        single_utterance: bool = False,
        voice_activity_events: bool = False,
    ) -> None:
        self._recognizer = recognizer
        self._language = language_code
        self._interim_results = interim_results
        self._single_utterance = single_utterance
        self._voice_events = voice_activity_events
        self._vad = webrtcvad.Vad(VAD_MODE)
        self._pending = bytearray()  # less than one frame
        self._now_ms = 0
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_MS // FRAME_MS)
        self._voiced_run = 0
        self._segment: list[bytes] | None = None  # None: not in speech
        self._silent_run = 0
        self._next_interim_ms = 0
        #: True once a single utterance has ended: the stream is over.
        self.done = False

    @property
    def audio_ms(self) -> int:
        return self._now_ms

    def feed(self, pcm16: bytes) -> list[Output]:
        """Take 8 kHz PCM16 audio; return what became due (events, interims, finals)."""
        out: list[Output] = []
        if self.done:
            return out
        self._pending += pcm16
        usable = len(self._pending) - len(self._pending) % FRAME_BYTES
        for i in range(0, usable, FRAME_BYTES):
            out += self._frame(bytes(self._pending[i : i + FRAME_BYTES]))
            if self.done:
                break
        del self._pending[:usable]
        return out

    def finish(self) -> list[Output]:
        """The client half-closed: the speech in progress, if any, ends here."""
        if self.done or self._segment is None:
            return []
        return self._end_segment()

    def _frame(self, frame: bytes) -> list[Output]:
        self._now_ms += FRAME_MS
        voiced = self._vad.is_speech(frame, SAMPLE_RATE)
        if self._segment is None:
            self._preroll.append(frame)
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if self._voiced_run * FRAME_MS < SPEECH_START_MS:
                return []
            self._segment = list(self._preroll)
            self._preroll.clear()
            self._voiced_run = self._silent_run = 0
            self._next_interim_ms = self._now_ms + INTERIM_EVERY_MS
            return [SpeechEvent("SPEECH_ACTIVITY_BEGIN", self._now_ms)] if self._voice_events else []
        self._segment.append(frame)
        self._silent_run = 0 if voiced else self._silent_run + 1
        if self._silent_run * FRAME_MS >= SPEECH_END_MS:
            return self._end_segment()
        if self._interim_results and self._now_ms >= self._next_interim_ms:
            self._next_interim_ms = self._now_ms + INTERIM_EVERY_MS
            text = self._transcribe()
            if text:
                return [Transcript(text, False, self._now_ms)]
        return []

    def _end_segment(self) -> list[Output]:
        out: list[Output] = []
        if self._voice_events:
            out.append(SpeechEvent("SPEECH_ACTIVITY_END", self._now_ms))
        if self._single_utterance:
            # Google says so first, then sends the final and closes the stream.
            out.append(SpeechEvent("END_OF_SINGLE_UTTERANCE", self._now_ms))
            self.done = True
        text = self._transcribe()
        self._segment = None
        if text:  # Google sends no result for a segment with no words
            out.append(Transcript(text, True, self._now_ms))
        return out

    def _transcribe(self) -> str:
        assert self._segment is not None
        return self._recognizer.transcribe(pcm16_to_ulaw(b"".join(self._segment)), self._language).strip()
