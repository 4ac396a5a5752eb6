"""What the turn machine is made of: its states, one turn's record, its settings, and
the carrier side it talks to. No behaviour here (see ``turn.py`` and its parts)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from voiced.agent.base import Event
from voiced.metrics import TurnTimes
from voiced.options import default
from voiced.phrases import english

_EN = english()


class State(enum.Enum):
    GREETING = "greeting"
    LISTENING = "listening"
    AWAITING_FINAL = "awaiting_final"
    THINKING = "thinking"
    SPEAKING = "speaking"
    HANGING_UP = "hanging_up"
    ENDED = "ended"


class CallTransport(Protocol):
    """The carrier side of a call (the WebSocket protocol implements it)."""

    def send_audio(self, ulaw: bytes) -> None: ...
    def send_mark(self, name: str) -> None: ...
    def send_clear(self) -> None: ...
    def hang_up(self) -> None: ...


@dataclass(frozen=True)
class TurnSettings:
    """What a call is told; the service builds it from ``Settings``. Each default is its
    option's (``voiced.options``) or its phrase's in the English catalog, never a copy."""

    barge_in_ms: int = default("barge_in_ms")
    #: After a barge-in, how long no words (or only "yeah"s) resume the stopped reply; 0: never.
    false_interruption_ms: int = default("false_interruption_ms")
    final_timeout_ms: int = default("stt_final_timeout_ms")
    fallback_timeout_ms: int = default("stt_fallback_timeout_ms")
    # The phrases: the language's catalog (voiced.phrases), English by default.
    interim_phrase: str = _EN["interim"]
    interim_wait_phrase: str = _EN["interim_wait"]
    ask_again_phrase: str = _EN["ask_again"]
    filler_ms: int = default("agent_filler_ms")
    filler_phrase: str = _EN["filler"]
    apology_phrase: str = _EN["apology"]
    idle_reprompt_ms: int = default("idle_reprompt_ms")
    idle_max_reprompts: int = default("idle_max_reprompts")
    idle_goodbye_phrase: str = _EN["idle_goodbye"]
    max_call_s: int = default("max_call_s")
    time_limit_phrase: str = _EN["time_limit"]
    drain_goodbye_phrase: str = _EN["drain_goodbye"]
    #: An outbound call's greeting waits for the callee's "Hello?", at most this long (voiced.call.first_words).
    outbound_hello_timeout_ms: int = default("outbound_hello_timeout_ms")
    #: Said before the greeting while calls are recorded (--recording-announcement); "": nothing.
    announcement_phrase: str = ""

    def phrases(self) -> list[str]:
        """Every phrase the call itself may say: the phrase cache holds them from start-up."""
        phrases = [self.interim_phrase, self.interim_wait_phrase, self.ask_again_phrase, self.filler_phrase,
                   self.apology_phrase, self.idle_goodbye_phrase, self.time_limit_phrase, self.drain_goodbye_phrase]
        return phrases + [self.announcement_phrase] if self.announcement_phrase else phrases


@dataclass
class Turn:
    times: TurnTimes = field(default_factory=TurnTimes)
    number: int | None = None  # assigned when the turn is answered
    reported: bool = False
    stt_failed: bool = False
    prompted: bool = False  # the caller was asked to say this utterance again
    answer_coming: bool = False  # STT gave up, but its fallback is transcribing the utterance
    text: str = ""
    event: Event | None = None
