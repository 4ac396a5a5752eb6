"""What a call leaves behind: its record, and the events that build it as it happens.

A ``Call`` keeps one ``CallRecord`` and tells a ``CallObserver`` (the service's hub)
each time something worth keeping happened. The same events feed the ``TURN``,
``CALLER`` and ``BOT`` log lines, the journal (the record, once the call has
ended) and anything that watches calls live. Pure data: no I/O, no clock reads
(times are handed in).
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from twisted.logger import Logger

from voiced.agent.base import CallInfo

log = Logger(namespace="voiced.call")


@dataclass
class TurnRecord:
    number: int
    caller_text: str  # "" for an event turn
    event: dict[str, Any] | None = None  # {"dtmf": "5"} | {"idle": 1}
    reply_text: str = ""  # everything the agent said (fillers and apologies excluded)
    heard_text: str = ""  # what of it the caller heard
    interrupted: bool = False
    actions: list[str] = field(default_factory=list)
    filler: bool = False
    agent_error: str = ""  # the failed reply's reason (the apology played)
    metrics: dict[str, int | None] = field(default_factory=dict)  # the TURN line's values
    #: Which TTS engines spoke the reply (issue 22: a fallback chain's link, "local", "cache").
    tts_engines: list[str] = field(default_factory=list)
    #: Seconds from the call's start (its recording's time zero) to the caller's first word
    #: (the event, for an event turn) and to the first sentence of the reply playing.
    caller_at_s: float | None = None
    bot_at_s: float | None = None


#: How a record knows what the caller heard: from the carrier's playback echoes (marks), or
#: from voiced's own playout clock where the carrier echoes nothing (Asterisk AudioSocket).
PLAYOUTS = ("carrier", "local")


@dataclass
class CallRecord:
    # The carrier's own call and stream ids, whatever the carrier: the keys keep Twilio's
    # names so that the webhook consumers written for them go on working.
    call_sid: str
    stream_sid: str
    carrier: str
    playout: str  # one of PLAYOUTS
    from_number: str
    to_number: str
    parameters: dict[str, str]
    started_at: float  # wall-clock seconds (time.time())
    ended_at: float | None = None
    end_reason: str = ""
    turns: list[TurnRecord] = field(default_factory=list)
    stt_retries: int = 0
    stt_failures: list[str] = field(default_factory=list)  # each give-up's reason
    #: Caller sound over the bot, each decision: {"at_s": since the start, "decision":
    #: interrupt | ignore | resume, "reason": speech | echo | background | backchannel | no_words}.
    barge_ins: list[dict[str, Any]] = field(default_factory=list)
    #: "outbound" for a call voiced placed, with the dial that placed it (voiced.outbound).
    direction: str = "inbound"
    dial_id: str = ""
    #: Who took an outbound call with answering-machine detection on (``ANSWERED_BY``);
    #: "" when nobody asked (inbound calls, --amd off).
    answered_by: str = ""
    #: The call's profile (--profiles; "" without) and the language it ran in.
    profile: str = ""
    language: str = ""
    #: The call's recording (a WAV file, --recordings), "" when not recorded.
    recording: str = ""

    @classmethod
    def begin(cls, info: CallInfo, started_at: float, playout: str = "carrier") -> "CallRecord":
        if playout not in PLAYOUTS:
            raise ValueError(f"playout must be one of {', '.join(PLAYOUTS)}, not {playout!r}")
        return cls(info.call_id, info.stream_id, info.carrier, playout, info.from_number, info.to_number,
                   dict(info.custom_parameters), started_at, direction=info.direction, dial_id=info.dial_id,
                   language=info.language)

    def turn(self, number: int) -> TurnRecord | None:
        for turn in reversed(self.turns):
            if turn.number == number:
                return turn
        return None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class CallObserver(Protocol):
    """Told of every call's life. Called on the reactor thread; must not block or raise."""

    def call_event(self, record: CallRecord, kind: str, data: dict[str, Any]) -> None:
        """``kind`` is one of: ``start``; ``caller`` (a turn asked: number, text, event);
        ``reply`` (all of a reply's audio was sent, the BOT line: turn, text);
        ``bot`` (a reply finished or was cut: turn, text, heard, interrupted); ``turn``
        (a turn's metrics: number, metrics); ``answered`` (an outbound call's answering-machine
        verdict: answered_by, source); ``end`` (the record is complete)."""


#: What answered an outbound call: a person, an answering machine (a fax counts as one), or
#: nobody could tell (the call then greeted, as for a person).
ANSWERED_BY = ("human", "machine", "unknown")


#: Ended calls kept in memory for whoever wants the recent ones (a console) without a journal.
RECENT_CALLS = 200


class CallHub:
    """Process-wide (the service owns it): fans every call's events out to the
    observers that subscribed (a journal, live viewers) and keeps the records of
    the last ``RECENT_CALLS`` ended calls. One failing observer never stops the
    others, nor the call."""

    def __init__(self, keep: int = RECENT_CALLS) -> None:
        self._observers: list[CallObserver] = []
        self.live: dict[str, CallRecord] = {}
        self.recent: deque[CallRecord] = deque(maxlen=keep)

    def subscribe(self, observer: CallObserver) -> None:
        self._observers.append(observer)

    def unsubscribe(self, observer: CallObserver) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def call_event(self, record: CallRecord, kind: str, data: dict[str, Any]) -> None:
        if kind == "start":
            self.live[record.call_sid] = record
        elif kind == "end":
            self.live.pop(record.call_sid, None)
            self.recent.append(record)
        for observer in list(self._observers):
            try:
                observer.call_event(record, kind, data)
            except Exception:
                log.failure("Call observer {observer!r} failed on {kind} call={call}", observer=observer, kind=kind,
                            call=record.call_sid)
