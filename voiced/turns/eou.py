"""Voice activity and end of utterance, frame by frame, on an injected clock.

Decisions are made in audio time (counted frames), so network jitter in frame
arrival cannot shorten or stretch a silence; timestamps come from the clock so
latencies are measured as the caller lives them. "Speech end" is the arrival of
the last voiced frame, not the moment the silence timer ran out.

A frame is speech when the voice-activity detector's probability reaches its threshold
and the frame is audible above the line's noise floor. A detector that answers later
(a model batched off the reactor) delays the frame's decision, never its time: each
frame keeps the time it arrived, and its events reach ``on_late_events``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

from twisted.internet.interfaces import IReactorTime

from voiced.audio import FRAME_BYTES, FRAME_MS, audioop
from voiced.turns.vad import VoiceActivity, VoiceStream

_ulaw2lin, _rms = audioop.ulaw2lin, audioop.rms
#: How much each voiced frame weighs in ``recent_level`` (its memory: about 5 frames).
RECENT_WEIGHT = 0.2
#: Voiced frames of the current sound kept for the noise check (the last 0.48 s).
VOICED_FRAMES_KEPT = 24


@dataclass(frozen=True)
class SpeechStarted:
    at: float  # clock time the first voiced frame of the run began


@dataclass(frozen=True)
class SpeechEnded:
    at: float  # clock time the last voiced frame arrived


SpeechEvent = SpeechStarted | SpeechEnded


class EndOfUtterance:
    """Turns a stream of frames into speech-start and speech-end events.

    - a run of ``min_speech_ms`` voiced audio starts speech (coughs and clicks shorter
      than that are ignored);
    - ``eou_silence_ms`` of unvoiced audio after speech ends the utterance;
    - ``voiced_ms`` counts only voiced audio since speech started, which is what
      barge-in debouncing compares with its threshold;
    - webrtcvad keeps saying "voiced" for ~100 ms after the voice stops (its hangover),
      so the speech-end time is the last voiced frame that is also audible above the
      line's noise floor, not the last frame the VAD called voiced.
    Frames of any length are re-cut into 20 ms frames.
    """

    def __init__(
        self,
        clock: IReactorTime,
        vad: VoiceActivity | Callable[[bytes], float | bool],  # or a 20 ms PCM16 frame -> probability
        eou_silence_ms: int,
        min_speech_ms: int,
        call_id: str | None = None,
    ) -> None:
        self._clock = clock
        if hasattr(vad, "open"):
            self._stream: VoiceStream | None = vad.open(self._delivered, call_id)
            self._classify = self._stream.push
            self._threshold = vad.threshold
        else:
            self._stream, self._classify, self._threshold = None, vad, 0.5
        # Frames whose probability the detector will deliver later: (arrival time, rms).
        self._undecided: deque[tuple[float, int, bytes]] = deque()
        #: Where the events of frames decided later go (the call sets it).
        self.on_late_events: Callable[[list[SpeechEvent]], None] = lambda events: None
        self.eou_silence_ms = eou_silence_ms
        self.min_speech_ms = min_speech_ms
        self._pending = b""
        self.in_speech = False
        self.voiced_ms = 0
        self.speech_ms = 0  # all audio since speech started, gaps included
        self.silence_ms = 0
        self.speech_started_at: float | None = None
        self.last_voiced_at: float | None = None
        self._run_ms = 0
        self._run_started_at: float | None = None
        self._run_energy = 0
        self._voiced_energy = 0  # sum of squares of the voiced frames' rms since speech started
        self._recent_energy = 0.0  # the last few voiced frames' energy: who is making the sound now
        self.last_level = 0.0  # speech_level() of the last utterance that ended
        #: The current sound's latest voiced frames (PCM16): the barge-in policy's noise check.
        self.voiced_frames: deque[bytes] = deque(maxlen=VOICED_FRAMES_KEPT)
        self._noise_rms = 0.0

    def push(self, ulaw: bytes) -> list[SpeechEvent]:
        if not self._pending and len(ulaw) == FRAME_BYTES:  # Twilio's 20 ms message: no re-cut
            event = self._frame(ulaw)
            return [] if event is None else [event]
        data = self._pending + ulaw if self._pending else ulaw
        usable = len(data) - len(data) % FRAME_BYTES
        events: list[SpeechEvent] = []
        for i in range(0, usable, FRAME_BYTES):
            event = self._frame(data[i : i + FRAME_BYTES])
            if event is not None:
                events.append(event)
        self._pending = data[usable:]
        return events

    def _frame(self, frame: bytes) -> SpeechEvent | None:
        now = self._clock.seconds()
        pcm = _ulaw2lin(frame, 2)  # once, for both the VAD and the energy
        rms = _rms(pcm, 2)
        # The detector hears every frame, even one too quiet to count: it adapts to the line
        # frame by frame, and the noise floor follows what it calls unvoiced.
        probability = self._classify(pcm)
        if probability is None:
            self._undecided.append((now, rms, pcm))  # decided in order, when the detector answers
            return None
        return self._decide(now, rms, probability, pcm)

    def _delivered(self, probability: float) -> None:
        if not self._undecided:
            return
        at, rms, pcm = self._undecided.popleft()
        event = self._decide(at, rms, probability, pcm)
        if event is not None:
            self.on_late_events([event])

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._undecided.clear()

    def _decide(self, now: float, rms: int, probability: float | bool, pcm: bytes) -> SpeechEvent | None:
        if probability >= self._threshold:
            speech = rms > 3 * self._noise_rms + 30
        else:
            # A slow average of what the line sounds like when nobody speaks.
            self._noise_rms += (rms - self._noise_rms) * 0.05
            speech = False
        if speech:
            self.voiced_frames.append(pcm)
        if not self.in_speech:
            if not speech:
                if self._run_ms:
                    self.voiced_frames.clear()
                self._run_ms, self._run_started_at = 0, None
                return None
            if self._run_started_at is None:
                self._run_started_at = now - FRAME_MS / 1000
                self._run_energy = 0
                self._recent_energy = rms * rms
            self._run_ms += FRAME_MS
            self._run_energy += rms * rms
            self._recent_energy += (rms * rms - self._recent_energy) * RECENT_WEIGHT
            self.last_voiced_at = now
            if self._run_ms < self.min_speech_ms:
                return None
            self.in_speech = True
            self.voiced_ms = self.speech_ms = self._run_ms
            self.silence_ms = 0
            self.speech_started_at = self._run_started_at
            self._voiced_energy = self._run_energy
            self._run_ms, self._run_started_at = 0, None
            return SpeechStarted(self.speech_started_at)
        self.speech_ms += FRAME_MS
        if speech:
            self.voiced_ms += FRAME_MS
            self._voiced_energy += rms * rms
            self._recent_energy += (rms * rms - self._recent_energy) * RECENT_WEIGHT
            self.silence_ms = 0
            self.last_voiced_at = now
            return None
        self.silence_ms += FRAME_MS
        if self.silence_ms < self.eou_silence_ms:
            return None
        self.last_level = self.speech_level()
        self.voiced_frames.clear()
        self.in_speech = False
        self.voiced_ms = self.speech_ms = 0
        assert self.last_voiced_at is not None
        return SpeechEnded(self.last_voiced_at)

    def speech_level(self) -> float:
        """The rms of the current utterance's voiced frames (0 outside speech)."""
        if not self.in_speech or not self.voiced_ms:
            return 0.0
        return (self._voiced_energy / (self.voiced_ms // FRAME_MS)) ** 0.5

    def recent_level(self) -> float:
        """The rms of the last few voiced frames (about 100 ms; 0 outside speech): a long
        echo before the caller's voice must not outweigh the voice."""
        return self._recent_energy ** 0.5 if self.in_speech else 0.0

    def sustained(self, ms: int) -> bool:
        """Speech has gone on for ``ms``, at least half of it voiced, and the caller is
        voicing now: words with the gaps between them count (a sentence's pauses must not
        hide it for seconds), a single word or cough shorter than ``ms`` does not."""
        return (
            self.in_speech
            and self.silence_ms == 0
            and self.speech_ms >= ms
            and self.voiced_ms * 2 >= self.speech_ms
        )

    def end_speech_now(self) -> None:
        """Close the current utterance without an event (the STT engine's endpointing
        ended the turn first); new speech must again pass ``min_speech_ms``."""
        self.last_level = self.speech_level()
        self.voiced_frames.clear()
        self.in_speech = False
        self.voiced_ms = self.speech_ms = self.silence_ms = 0
