"""The emulator's scripted, cheap mode: recognition by energy, a fixed transcript, fixed latencies.

For load tests, where Whisper and espeak-ng would spend the cores the daemon is being
measured on. ``EnergySession`` replaces ``RecognitionSession`` (same feed/finish
contract): a 20 ms frame is speech when its RMS exceeds ``LOUD_RMS``; the final
(always ``transcript``) is sent once ``final_delay_ms`` of audio has been *received*
after the last loud frame, as Google counts end-of-speech silence in the audio it
has, so audio a client still holds back delays the final by as much. A partial goes
out every ``INTERIM_EVERY_MS`` of speech. Synthesis returns ``SCRIPTED_TTS_MS`` of a
quiet tone after ``tts_delay_ms``. No model is loaded.

``is_loud`` is public: the load generator uses the same rule to know where its own
line's speech ends.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from voiced.audio import FRAME_MS, SAMPLE_RATE, audioop
from voiced.emulator.recognizer import Output, SpeechEvent, Transcript

FRAME_BYTES_PCM16 = SAMPLE_RATE * FRAME_MS // 1000 * 2
#: About -44 dBFS: above line hiss, below any spoken syllable (the caller's VOICE_RMS).
LOUD_RMS = 200
INTERIM_EVERY_MS = 700
SCRIPTED_TTS_MS = 1000
DEFAULT_TRANSCRIPT = "What time do you open?"


def is_loud(pcm16_frame: bytes | memoryview) -> bool:
    return audioop.rms(pcm16_frame, 2) > LOUD_RMS


@dataclass(frozen=True)
class ScriptedPlan:
    transcript: str = DEFAULT_TRANSCRIPT
    final_delay_ms: int = 300  # audio after the last loud frame before the final
    tts_delay_ms: int = 0  # wall time before each synthesis answers

    def __post_init__(self) -> None:
        if self.final_delay_ms < FRAME_MS or self.tts_delay_ms < 0:
            raise ValueError("final_delay_ms must be >= 20 and tts_delay_ms >= 0")


class EnergySession:
    """One stream's scripted recognition; used by one coroutine (or thread) at a time."""

    def __init__(self, plan: ScriptedPlan, interim_results: bool = True, single_utterance: bool = False) -> None:
        self._plan = plan
        self._interim_results = interim_results
        self._single_utterance = single_utterance
        self._pending = bytearray()
        self._now_ms = 0
        self._in_speech = False
        self._quiet_ms = 0
        self._next_interim_ms = 0
        self.done = False

    @property
    def audio_ms(self) -> int:
        return self._now_ms

    def feed(self, pcm16: bytes) -> list[Output]:
        out: list[Output] = []
        if self.done:
            return out
        self._pending += pcm16
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
            self._quiet_ms = 0
        elif self._in_speech:
            self._quiet_ms += FRAME_MS
            if self._quiet_ms >= self._plan.final_delay_ms:
                return self._final()
        if self._in_speech and self._interim_results and self._now_ms >= self._next_interim_ms:
            self._next_interim_ms = self._now_ms + INTERIM_EVERY_MS
            return [Transcript(self._plan.transcript, False, self._now_ms)]
        return []

    def _final(self) -> list[Output]:
        self._in_speech = False
        self._quiet_ms = 0
        out: list[Output] = []
        if self._single_utterance:
            out.append(SpeechEvent("END_OF_SINGLE_UTTERANCE", self._now_ms))
            self.done = True
        out.append(Transcript(self._plan.transcript, True, self._now_ms))
        return out


@functools.lru_cache(maxsize=8)
def scripted_speech_pcm16(sample_rate: int) -> bytes:
    """What scripted synthesis says: a quiet tone, PCM16 (the same for every call: made once per rate).
    The plan's ``tts_delay_ms`` is the server's to wait, without blocking (voiced.emulator.tts)."""
    n = SCRIPTED_TTS_MS * sample_rate // 1000
    period = max(2, sample_rate // 400)
    pcm = b"".join((1000 if (i % period) < period // 2 else -1000).to_bytes(2, "little", signed=True)
                   for i in range(period))
    return (pcm * (n // period + 1))[: n * 2]
