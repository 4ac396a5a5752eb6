"""The agent contract: what a call asks for a reply, and how the reply streams back.

One ``Agent`` per process (built by the service, holding any HTTP pool or model);
one ``Conversation`` per call. For each caller turn (or event: a DTMF digit, an
idle timeout, an answering machine ready to record) the call hands the conversation a ``TurnRequest`` holding the
history so far -- where every bot entry is only what the caller actually heard,
measured from the carrier's mark echoes -- and a ``ReplySink``. The agent pushes
reply text into the sink as it is generated (a token at a time is fine: the call
splits it into sentences and speaks each one as soon as it is complete) and
actions to take once the reply has played. The Deferred that ``respond`` returns
fires when the reply is complete; it fails with ``AgentError`` (or anything else)
when the reply failed, and the call then plays its apology. Cancelling it (barge-in,
hang-up) must stop the work (close the HTTP request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Union

from twisted.internet.defer import Deferred


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    stream_id: str
    from_number: str = ""
    to_number: str = ""
    custom_parameters: dict[str, str] = field(default_factory=dict)
    language: str = ""  # BCP-47: what the caller speaks and the reply must be in
    # Who brought the call ("twilio", "telnyx", "plivo", "vonage", "exotel", "asterisk", ...);
    # call_id and stream_id are that carrier's own ids.
    carrier: str = "twilio"
    # "outbound" for a call voiced placed (POST /calls, voiced-dial): its dial's variables reach the agent.
    direction: str = "inbound"
    variables: dict[str, str] = field(default_factory=dict)
    dial_id: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"sid": self.call_id, "from": self.from_number, "to": self.to_number,
                "parameters": dict(self.custom_parameters), "language": self.language, "carrier": self.carrier,
                "direction": self.direction, "variables": dict(self.variables), "dial_id": self.dial_id}


@dataclass(frozen=True)
class Said:
    """One entry of a call's history. A bot entry holds only what the caller heard;
    ``interrupted`` marks a bot reply cut by barge-in (its text ends at the word reached)."""

    role: Literal["caller", "bot"]
    text: str
    interrupted: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"role": self.role, "text": self.text, "interrupted": self.interrupted}


@dataclass(frozen=True)
class Dtmf:
    digit: str

    def as_json(self) -> dict[str, Any]:
        return {"dtmf": self.digit}


@dataclass(frozen=True)
class Idle:
    """The caller said nothing for the idle timeout after the bot finished; ``count``
    is 1 for the first time in a row, 2 for the second, ..."""

    count: int

    def as_json(self) -> dict[str, Any]:
        return {"idle": self.count}


@dataclass(frozen=True)
class Voicemail:
    """An outbound call reached an answering machine, past its beep: the reply is the
    message it records. The call hangs up once it has played, whatever the reply asks."""

    def as_json(self) -> dict[str, Any]:
        return {"voicemail": True}


Event = Union[Dtmf, Idle, Voicemail]


@dataclass(frozen=True)
class TurnRequest:
    number: int  # the turn's number in the call, from 1
    text: str  # what the caller said ("" for an event)
    event: Event | None
    history: tuple[Said, ...]  # everything before this turn, oldest first


@dataclass(frozen=True)
class EndCall:
    """Hang up once the reply has played."""


@dataclass(frozen=True)
class TransferCall:
    """Transfer the call to ``to`` (a phone number or SIP URI) once the reply has played."""

    to: str


Action = Union[EndCall, TransferCall]


class AgentError(Exception):
    """A failed reply: an HTTP error, a timeout, a malformed answer. The call plays its
    apology and goes back to listening; the message is logged with the call id."""


class ReplySink(Protocol):
    def text(self, delta: str) -> None:
        """More reply text, of any size (a token, a sentence, the whole reply)."""

    def sentence(self, text: str) -> None:
        """A complete sentence, spoken as it is (any pending text is spoken first)."""

    def action(self, action: Action) -> None:
        """Take ``action`` once the reply has played."""


class Conversation(Protocol):
    """Per-call dialog state; created by the process-wide agent for each call."""

    def greeting(self) -> list[str]:
        """The sentences that open the call."""

    def respond(self, request: TurnRequest, sink: ReplySink) -> Deferred[None]:
        """Produce the reply into ``sink``; fires when it is complete."""


class Agent(Protocol):
    name: str

    def start_conversation(self, call: CallInfo) -> Conversation: ...

    def fixed_phrases(self) -> list[str]:
        """Sentences known at start-up (greeting, prompts) for the phrase cache."""
