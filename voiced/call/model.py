"""What the turn machine is made of: its states, one turn's record, its settings, and
the carrier side it talks to. No behaviour here (see ``turn.py``, ``transcript.py`` and
``answering.py``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from voiced.agent.base import Event
from voiced.config import APOLOGY_PHRASE, FILLER_PHRASE, INTERIM_PHRASES, INTERIM_WAIT_PHRASES
from voiced.metrics import TurnTimes


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
    barge_in_ms: int = 160
    final_timeout_ms: int = 1500
    fallback_timeout_ms: int = 4000
    interim_phrase: str = INTERIM_PHRASES["en"]
    interim_wait_phrase: str = INTERIM_WAIT_PHRASES["en"]
    filler_ms: int = 1200
    filler_phrase: str = FILLER_PHRASE
    apology_phrase: str = APOLOGY_PHRASE
    idle_reprompt_ms: int = 8000
    idle_max_reprompts: int = 2
    idle_goodbye_phrase: str = "I haven't heard from you, so I'll hang up now. Goodbye."
    max_call_s: int = 1800
    time_limit_phrase: str = "I'm sorry, we have reached the time limit for this call. Goodbye."
    drain_goodbye_phrase: str = "I'm sorry, this line is closing for maintenance. Please call again. Goodbye."

    def phrases(self) -> list[str]:
        """Every phrase the call itself may say: the phrase cache holds them from start-up."""
        return [self.interim_phrase, self.interim_wait_phrase, self.filler_phrase, self.apology_phrase,
                self.idle_goodbye_phrase, self.time_limit_phrase, self.drain_goodbye_phrase]


@dataclass
class Turn:
    times: TurnTimes = field(default_factory=TurnTimes)
    number: int | None = None  # assigned when the turn is answered
    reported: bool = False
    stt_failed: bool = False
    text: str = ""
    event: Event | None = None
