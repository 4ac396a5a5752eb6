"""The caller's audio in, for one call: every frame goes to the STT stream, the
end-of-turn detector and the VAD; what the VAD makes of the frames goes to the turn
machine (``HearingHost``); a streaming STT is told when the caller pauses; and audio
that stops coming mid-utterance is taken for the silence it stands for. The hot path:
fifty frames a second per call, so it decides nothing about turns itself.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from voiced.audio import FRAME_MS, MULAW_8K, AudioFormat, silence_ulaw
from voiced.call.model import State
from voiced.stt.base import STTStream, silence
from voiced.turns.end_of_turn import EndOfTurn
from voiced.turns.eou import EndOfUtterance, SpeechEnded, SpeechEvent, SpeechStarted

#: The caller counts as pausing (for the STT's batching) after this much quiet mid-utterance:
#: longer than the gaps between words, which would otherwise send a phrase frame by frame,
#: and far shorter than any speech service takes to end an utterance on silence.
PAUSE_HINT_MS = 80
# A gap in the caller's audio longer than this (network or sender stall) counts as silence.
MEDIA_GAP_S = 0.2
MEDIA_GAP_CHECK_S = 0.1


class HearingHost(Protocol):
    """The turn machine (``voiced.call.turn.Call``) as the audio path sees it."""

    @property
    def state(self) -> State: ...

    def speech_started(self, at: float) -> None: ...
    def speech_ended(self, at: float) -> None: ...

    def caller_voicing(self) -> None:
        """The caller is voicing in the latest frame (is it long enough to barge in?)."""


class Hearing:
    def __init__(self, clock: IReactorTime, eou: EndOfUtterance, stt: STTStream, stt_audio: AudioFormat,
                 end_of_turn: EndOfTurn, host: HearingHost) -> None:
        self._clock = clock
        self._eou = eou
        self._stt = stt
        self._stt_audio = stt_audio
        self._end_of_turn = end_of_turn
        self._host = host
        # Optional (streaming engines): told when the caller pauses mid-utterance, so the
        # audio of a pause that may end the turn reaches the service without batching.
        self._stt_pausing = getattr(stt, "caller_pausing", None)
        self._caller_paused = False
        self._last_media_at = clock.seconds()
        self._gap_timer: IDelayedCall | None = None
        self._model_hears = end_of_turn.hears_audio  # fixed for the call: looked up once, not per frame
        eou.on_late_events = self.speech_events  # a detector batched off the reactor answers later

    def on_media(self, ulaw: bytes, stt_audio: bytes | None = None) -> None:
        """One frame of 8 kHz mu-law, and for wideband STT the same audio in the stream's format."""
        # Fifty times a second per call, so one method (a gap's silence comes here too).
        host = self._host
        if host.state is State.ENDED:
            return
        eou = self._eou
        self._last_media_at = self._clock.seconds()
        self._stt.feed(ulaw if stt_audio is None else stt_audio)
        if self._model_hears:  # only a semantic model listens: no work per frame without one
            # Until its reply plays the caller may go on with the same utterance (THINKING resumes it).
            self._end_of_turn.hear(ulaw, eou.in_speech or host.state in (State.AWAITING_FINAL, State.THINKING))
        events = eou.push(ulaw)
        # Most frames are quiet between utterances: no event, no pause to lift, nothing voicing.
        if events or eou.in_speech or self._caller_paused:
            self.speech_events(events)

    def speech_events(self, events: list[SpeechEvent]) -> None:
        """What the VAD decided of the frames so far (at once, or later for a batched detector)."""
        host = self._host
        if host.state is State.ENDED:
            return
        eou = self._eou
        for event in events:
            if isinstance(event, SpeechStarted):
                host.speech_started(event.at)
            elif isinstance(event, SpeechEnded):
                host.speech_ended(event.at)
        paused = eou.in_speech and eou.silence_ms >= PAUSE_HINT_MS
        if paused is not self._caller_paused and self._stt_pausing is not None:
            self._caller_paused = paused
            self._stt_pausing(paused)
        if eou.in_speech and not eou.silence_ms:
            host.caller_voicing()
        if eou.in_speech and self._gap_timer is None:
            self._gap_timer = self._clock.callLater(MEDIA_GAP_CHECK_S, self._check_gap)

    def close(self) -> None:
        if self._gap_timer is not None and self._gap_timer.active():
            self._gap_timer.cancel()

    def _check_gap(self) -> None:
        """Twilio streams the caller's track without pause, silence included; a sender
        that stops mid-utterance would otherwise leave the turn open for ever. Audio that
        has not come for MEDIA_GAP_S is taken as the silence it stands for."""
        self._gap_timer = None
        if self._host.state is State.ENDED or not self._eou.in_speech:
            return
        missing_ms = int((self._clock.seconds() - self._last_media_at) * 1000) // FRAME_MS * FRAME_MS
        if missing_ms >= MEDIA_GAP_S * 1000:
            wide = None if self._stt_audio == MULAW_8K else silence(self._stt_audio, missing_ms)
            self.on_media(silence_ulaw(missing_ms), wide)  # re-arms this check while speech goes on
        else:
            self._gap_timer = self._clock.callLater(MEDIA_GAP_CHECK_S, self._check_gap)
