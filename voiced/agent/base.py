"""The agent contract: what a call asks for a reply, sentence by sentence.

Replies stream as sentences so that an LLM's first sentence can be synthesized
while the rest is still being generated; a scripted agent simply emits all of
its sentences at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.defer import Deferred


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    stream_id: str
    from_number: str = ""
    to_number: str = ""
    custom_parameters: dict[str, str] = field(default_factory=dict)


class ReplySink(Protocol):
    def sentence(self, text: str) -> None:
        """One sentence of the reply, ready to be spoken."""

    def done(self, hang_up: bool = False) -> None:
        """The reply is complete; ``hang_up`` ends the call once it has played."""


class Conversation(Protocol):
    """Per-call dialog state; created by the process-wide agent for each call."""

    def greeting(self) -> list[str]:
        """The sentences that open the call."""

    def respond(self, text: str, sink: ReplySink) -> Deferred[None]:
        """Produce the reply to the caller's ``text`` into ``sink``. Cancelling the
        Deferred (barge-in, hang-up) stops the reply."""

    def heard(self, sentences: list[str], interrupted: bool) -> None:
        """What the caller actually heard of the last reply (from mark echoes), so
        history keeps only that."""


class Agent(Protocol):
    name: str

    def start_conversation(self, call: CallInfo) -> Conversation: ...

    def fixed_phrases(self) -> list[str]:
        """Sentences known at start-up (greeting, prompts) for the phrase cache."""
