"""The carrier port of the simulated caller: what any carrier's side of a media stream
says to the daemon, and how what the daemon says back is read.

``voiced-call`` is a person on the phone (``voiced.caller.session``) behind a carrier.
Each carrier is one ``CarrierWire`` class in ``voiced/caller/carriers/<name>.py``,
registered in ``voiced/caller/carriers/__init__.py``. A wire is pure: it turns the
caller's doings into messages and the daemon's messages into carrier-neutral events;
sockets, pacing, playback and timing belong to the session and the client.

Speech is always handed to a wire as 8 kHz mu-law, one 20 ms frame at a time; a wire
converts it to its carrier's format and framing with the daemon's own ``voiced.carrier.codec``
(one ``Codec`` per direction: ``encode`` the caller's frames, ``decode`` the daemon's audio
back to 8 kHz mu-law for the report).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Mapping, Protocol, Union

#: One message to the daemon. On a WebSocket, a str is a text frame and bytes are a
#: binary frame; on a TCP carrier, bytes are written to the stream as they are.
Outbound = Union[str, bytes]

Transport = Literal["websocket", "tcp"]


@dataclass(frozen=True)
class CallSetup:
    """A new call as the carrier would describe it, carrier-neutral."""

    call_id: str | None = None  # None: the carrier makes one up, shaped as its own ids are
    from_number: str = "+15550100"
    to_number: str = "+15550199"
    #: What the daemon's answer (TwiML <Parameter>, a stream URL's query...) handed the carrier for this call.
    parameters: Mapping[str, str] = field(default_factory=dict)
    account_id: str | None = None  # None: a made-up account, where the carrier names one
    secret: str | None = None  # the carrier credential the daemon checks (Twilio: the auth token)
    now: float = 0.0  # reactor seconds when the call is dialled: for tokens that expire


# -- what the daemon sends, carrier-neutral -----------------------------------------------
@dataclass(slots=True)
class Audio:
    """Bot audio to queue for playback, converted to 8 kHz mu-law."""

    ulaw: bytes


@dataclass(frozen=True)
class Marker:
    """A playback marker: answer it (``CarrierWire.marker_played``) once the audio queued before it has played."""

    name: str


@dataclass(frozen=True)
class Clear:
    """Drop every piece of queued bot audio that has not played yet."""


@dataclass(frozen=True)
class HangUp:
    """The daemon ended the call in a message (carriers where closing the socket is not the only way)."""

    reason: str = ""


@dataclass(frozen=True)
class SendBack:
    """A message the carrier sends at once in answer (an acknowledgement, a pong)."""

    message: Outbound


@dataclass(frozen=True)
class Problem:
    """The daemon broke the carrier's protocol: reported, never fatal."""

    message: str


DaemonEvent = Union[Audio, Marker, Clear, HangUp, SendBack, Problem]


class CarrierWire(Protocol):
    """One call's carrier side of the media stream. Build one with ``new_call``."""

    name: ClassVar[str]  # the registry's name: "twilio"
    title: ClassVar[str]  # for people: "Twilio Media Streams"
    transport: ClassVar[Transport]
    path: ClassVar[str]  # the daemon's WebSocket path ("/media", "/media/<name>"); "" on TCP
    #: Whether the carrier answers playback markers (Twilio echoes ``mark``); without
    #: markers the caller simply plays the daemon's audio.
    answers_markers: ClassVar[bool]
    #: Whether a clear answers, at once, the markers whose audio it dropped (Twilio: yes).
    clear_answers_markers: ClassVar[bool]
    #: The environment variable voiced-call reads the carrier's secret from ("" for none).
    secret_env: ClassVar[str]

    @classmethod
    def new_call(cls, setup: CallSetup) -> CarrierWire:
        """The wire for one new call."""
        ...

    @property
    def call_id(self) -> str:
        """The carrier's id of the call (Twilio: the CallSid)."""
        ...

    @property
    def stream_id(self) -> str:
        """The carrier's id of the media stream (Twilio: the StreamSid); the call id where there is none."""
        ...

    def upgrade_headers(self, signed_url: str) -> dict[str, str]:
        """HTTP headers for the WebSocket upgrade to ``signed_url`` (a signature); {} for none."""
        ...

    def opening(self) -> list[Outbound]:
        """What the carrier sends first, as soon as the connection is open."""
        ...

    def speech(self, ulaw: bytes, timestamp_ms: int) -> Outbound | None:
        """One 20 ms frame of the caller's speech (160 bytes of 8 kHz mu-law), ``timestamp_ms``
        into the stream; None while a carrier that sends larger chunks is still filling one.
        Fifty times a call-second: keep it cheap."""
        ...

    def digit(self, digit: str) -> list[Outbound]:
        """The caller pressed a DTMF key: one of 0-9, *, #, A-D."""
        ...

    def marker_played(self, name: str) -> list[Outbound]:
        """The audio queued before marker ``name`` has played (or a clear dropped it): the carrier's answer."""
        ...

    def hang_up(self) -> list[Outbound]:
        """The caller hangs up: what the carrier sends before it closes the connection."""
        ...

    def read(self, data: bytes, is_binary: bool) -> list[DaemonEvent]:
        """What the daemon sent: one WebSocket message (``is_binary`` says which kind), or on a
        TCP carrier the next bytes of the stream (``is_binary`` True; the wire keeps a
        partial frame until the rest arrives). Never raises on bad input: ``Problem``."""
        ...


def new_id(prefix: str) -> str:
    """A made-up carrier id: ``prefix`` and 32 hex digits, as Twilio's SIDs are."""
    return prefix + uuid.uuid4().hex
