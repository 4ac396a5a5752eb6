"""The emulator's scripted, cheap mode: recognition by energy, scripted transcripts, fixed latencies.

For load tests, where Whisper and espeak-ng would spend the cores the daemon is being
measured on, and for tests that need to know what the caller "said" (in any language).
``EnergySession`` replaces ``RecognitionSession`` (same feed/finish
contract): a 20 ms frame is speech when its RMS exceeds ``LOUD_RMS``; the final
(the plan's transcript for the stream's language and the utterance's place in the
stream) is sent once ``final_delay_ms`` of audio has been *received*
after the last loud frame, as Google counts end-of-speech silence in the audio it
has, so audio a client still holds back delays the final by as much. A partial goes
out every ``INTERIM_EVERY_MS`` of speech. With a heard table (``--heard``,
voiced.emulator.heard) an utterance whose audio the table knows gets the words said in
it instead of the script (a sentence's first half: its own words); without one, no
audio is kept and nothing is searched. Synthesis returns ``SCRIPTED_TTS_MS`` of a
tone at a voice's level after ``tts_delay_ms``. No model is loaded.

``is_loud`` is public: the load generator uses the same rule to know where its own
line's speech ends.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from voiced.audio import FRAME_MS, SAMPLE_RATE, audioop
from voiced.emulator.common import LANGUAGE_RE
from voiced.emulator.heard import HeardTable, Listening
from voiced.emulator.recognizer import Output, SpeechEvent, Transcript

FRAME_BYTES_PCM16 = SAMPLE_RATE * FRAME_MS // 1000 * 2
#: About -44 dBFS: above line hiss, below any spoken syllable (the caller's VOICE_RMS).
LOUD_RMS = 200
INTERIM_EVERY_MS = 700
SCRIPTED_TTS_MS = 1000
#: The tone's level: -16 dBFS, where TTS voices are normalized (Google's, espeak-ng's), so that
#: the daemon's echo guard and barge-in judge weigh the caller's sound against a bot as loud
#: as a real one.
SCRIPTED_TTS_AMPLITUDE = 5200
DEFAULT_TRANSCRIPT = "What time do you open?"


def is_loud(pcm16_frame: bytes | memoryview) -> bool:
    return audioop.rms(pcm16_frame, 2) > LOUD_RMS


Script = tuple[str, ...]


@dataclass(frozen=True)
class ScriptedPlan:
    """What the scripted mode says and how late.

    A stream's finals follow a script: its utterances in order get the script's
    transcripts in order, and every utterance past the end gets the last one again.
    ``transcript`` is the script of every stream (one text, or one per utterance);
    ``by_language`` gives the streams of one language theirs, keyed by a language
    code ("he-IL", or "he" for every region).
    """

    transcript: str | Sequence[str] = DEFAULT_TRANSCRIPT
    final_delay_ms: int = 300  # audio after the last loud frame before the final
    tts_delay_ms: int = 0  # wall time before each synthesis answers
    by_language: Mapping[str, str | Sequence[str]] = field(default_factory=dict, hash=False)
    #: Known audio and the words said in it: an utterance holding some gets those words.
    heard: HeardTable | None = field(default=None, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.final_delay_ms < FRAME_MS or self.tts_delay_ms < 0:
            raise ValueError("final_delay_ms must be >= 20 and tts_delay_ms >= 0")
        # Normalized once here, so a stream's start is two dict lookups.
        object.__setattr__(self, "transcript", _script(self.transcript, "transcript"))
        by_language = {}
        for language, script in self.by_language.items():
            if not LANGUAGE_RE.match(language):
                raise ValueError(f"{language!r} is not a language code (like he-IL)")
            by_language[language.lower()] = _script(script, f"the {language} transcript")
        object.__setattr__(self, "by_language", by_language)

    def script_for(self, language_code: str) -> Script:
        """The transcripts, in order, of a stream in ``language_code``."""
        code = language_code.lower()
        script = self.by_language.get(code) or self.by_language.get(code.split("-")[0]) or self.transcript
        return script  # type: ignore[return-value]  # normalized to a Script by __post_init__


def _script(value: str | Sequence[str], what: str) -> Script:
    script = (value,) if isinstance(value, str) else tuple(value)
    if not script or not all(isinstance(text, str) and text.strip() for text in script):
        raise ValueError(f"{what} needs at least one text, and no empty one")
    return script


def parse_transcripts(values: Sequence[str]) -> tuple[Script, dict[str, Script]]:
    """``--transcript`` values -> (every stream's script, the scripts by language).

    "LANG=TEXT" (LANG a language code: "he-IL=...") adds to that language's script
    (keyed in lower case), any other value to every stream's; each in the order given.
    No plain value: the default transcript.
    """
    every: list[str] = []
    by_language: dict[str, list[str]] = {}
    for value in values:
        language, sep, text = value.partition("=")
        if sep and LANGUAGE_RE.match(language):
            by_language.setdefault(language.lower(), []).append(text)  # he-IL and he-il are one script
        else:
            every.append(value)
    return tuple(every) or (DEFAULT_TRANSCRIPT,), {language: tuple(texts) for language, texts in by_language.items()}


class EnergySession:
    """One stream's scripted recognition; used by one coroutine (or thread) at a time."""

    def __init__(
        self, plan: ScriptedPlan, interim_results: bool = True, single_utterance: bool = False, language_code: str = ""
    ) -> None:
        self._plan = plan
        self._script = plan.script_for(language_code)
        self._utterance = 0  # the script's line for the utterance in progress (or the next one)
        self._interim_results = interim_results
        self._single_utterance = single_utterance
        self._pending = bytearray()
        self._now_ms = 0
        self._in_speech = False
        self._quiet_ms = 0
        self._next_interim_ms = 0
        self._listening = Listening(plan.heard) if plan.heard is not None else None
        self.done = False

    @property
    def audio_ms(self) -> int:
        return self._now_ms

    def feed(self, pcm16: bytes) -> list[Output]:
        out: list[Output] = []
        if self.done:
            return out
        self._pending += pcm16
        if self._listening is not None:
            self._listening.keep(pcm16)
        usable = len(self._pending) - len(self._pending) % FRAME_BYTES_PCM16
        # Frames as views, not copies: this runs for every request of hundreds of streams.
        with memoryview(self._pending) as view:
            for i in range(0, usable, FRAME_BYTES_PCM16):
                output = self._frame(is_loud(view[i : i + FRAME_BYTES_PCM16]))
                if output:
                    out += output
                    if self.done:
                        break
        del self._pending[:usable]
        return out

    def finish(self) -> list[Output]:
        return self._final() if self._in_speech and not self.done else []

    def _frame(self, loud: bool) -> list[Output]:
        self._now_ms += FRAME_MS
        if loud:
            if not self._in_speech:
                self._in_speech = True
                self._next_interim_ms = self._now_ms + INTERIM_EVERY_MS
                if self._listening is not None:
                    self._listening.speech_started(_samples(self._now_ms - FRAME_MS))
            self._quiet_ms = 0
        elif self._in_speech:
            self._quiet_ms += FRAME_MS
            if self._quiet_ms >= self._plan.final_delay_ms:
                return self._final()
        if self._in_speech and self._interim_results and self._now_ms >= self._next_interim_ms:
            self._next_interim_ms = self._now_ms + INTERIM_EVERY_MS
            return [Transcript(self._text(), False, self._now_ms)]
        return []

    def _text(self) -> str:
        if self._listening is not None:
            heard = self._listening.words_until(_samples(self._now_ms))
            if heard:
                return heard
        return self._script[min(self._utterance, len(self._script) - 1)]

    def _final(self) -> list[Output]:
        self._in_speech = False
        self._quiet_ms = 0
        out: list[Output] = []
        if self._single_utterance:
            out.append(SpeechEvent("END_OF_SINGLE_UTTERANCE", self._now_ms))
            self.done = True
        out.append(Transcript(self._text(), True, self._now_ms))
        self._utterance += 1
        if self._listening is not None:
            self._listening.utterance_ended(_samples(self._now_ms))
        return out


def _samples(ms: int) -> int:
    return ms * SAMPLE_RATE // 1000


@functools.lru_cache(maxsize=8)
def scripted_speech_pcm16(sample_rate: int) -> bytes:
    """What scripted synthesis says: a tone at a voice's level, PCM16 (the same for every call: made once per rate).
    The plan's ``tts_delay_ms`` is the server's to wait, without blocking (voiced.emulator.tts)."""
    n = SCRIPTED_TTS_MS * sample_rate // 1000
    period = max(2, sample_rate // 400)
    level = SCRIPTED_TTS_AMPLITUDE
    pcm = b"".join((level if (i % period) < period // 2 else -level).to_bytes(2, "little", signed=True)
                   for i in range(period))
    return (pcm * (n // period + 1))[: n * 2]
