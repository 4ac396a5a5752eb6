"""The carrier port: what a carrier hands the call core, and what the core asks of it.

A carrier (Twilio, Telnyx, Plivo, Vonage, Exotel, Asterisk) is a package under
``voiced.carrier`` with a pure wire model, a thin protocol, its admission (signatures)
and the HTTP answer that starts its stream. Its protocol drives a ``CallLink``
(``voiced.carrier.link``), which turns what the carrier says into a call of the core
and carries the core's replies back:

- in: a ``CallStart`` (who the call is, its audio format), the caller's audio in that
  format, DTMF digits, playback markers the carrier echoed, the end of the stream;
- out (``CarrierWire``, implemented by the carrier's protocol): audio in the call's
  format, a playback marker, clear, and ending the call the carrier's way.

The core (``CallCore``, the service) admits or refuses a new call and makes and
forgets ``Call`` objects; it never learns which carrier a call came from beyond the
name in ``CallStart.carrier``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from voiced.audio import MULAW_8K, AudioFormat
from voiced.call.control import CallControl
from voiced.call.model import CallTransport

if TYPE_CHECKING:
    from voiced.call.turn import Call

@dataclass(frozen=True)
class CallStart:
    """A carrier's stream began: who the call is and how its audio is encoded."""

    carrier: str  # "twilio", "telnyx", ...: the record and the logs name it
    call_id: str  # the carrier's own id of the call (Twilio's CallSid)
    stream_id: str  # the carrier's id of this media stream ("" when it has none)
    from_number: str = ""
    to_number: str = ""
    custom_parameters: dict[str, str] = field(default_factory=dict)
    audio: AudioFormat = MULAW_8K


class Refused(Exception):
    """The core will not take a new call now (draining, at max_calls): an HTTP status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CallCore(Protocol):
    """What the service offers every carrier (``voiced.service.VoicedService``)."""

    clock: Any  # IReactorTime
    metrics: Any  # voiced.metrics.Metrics

    def admit(self) -> None:
        """Raise ``Refused`` unless a new call may start now (before any call state exists)."""

    def new_call(self, start: CallStart, transport: CallTransport, playout: str) -> "Call":
        """Make the call; ``playout`` is "carrier" (the carrier echoes playback markers) or
        "local" (voiced paces the audio itself)."""

    def call_ended(self, call: "Call") -> None: ...


class CarrierWire(Protocol):
    """What a carrier's protocol does on its wire for one call's ``CallLink``."""

    def write_audio(self, payload: bytes) -> None:
        """Bot audio in the call's format, a whole number of 20 ms frames."""

    def write_mark(self, name: str) -> None:
        """A playback marker the carrier echoes once the audio before it has played
        (never called for a carrier without echoes: the local playout clock stands in)."""

    def write_clear(self) -> None:
        """Drop the audio the carrier has buffered and not yet played."""

    def end_call(self) -> None:
        """The bot hangs up: end the stream (and the call) the carrier's way."""

    def close(self, code: int, reason: str) -> None:
        """Close the stream with one of ``voiced.carrier.link``'s codes (1000: normally)."""


@dataclass
class Carrier:
    """What one carrier package contributes to the daemon; ``voiced.web`` mounts it.

    ``media``: the WebSocket resource of its streams, mounted at ``/media/<name>``
    (Twilio's at ``/media``: ``media_at``); ``answer``: the HTTP answer that starts a stream
    (TwiML, TeXML, ...), at ``/answer/<name>`` (Twilio's at ``/twiml``); ``control``: makes its
    REST control (hang-up, transfer) from the service's HTTP client and clock once the
    service starts; ``listeners``: endpoints of its own, as (option, endpoint string,
    factory) (Asterisk's AudioSocket); ``mode`` (``voiced.carrier.gate``): signed (its
    secret is set: unsigned requests are refused), open (no secret, loopback only), off
    (its routes answer 403), unsigned (Twilio without a token); ``warnings``: what is
    wrong with its configuration, said once at start-up."""

    name: str
    media: Any = None  # twisted.web.resource.IResource
    answer: Any = None
    control: Callable[[Any, Any], CallControl] | None = None
    listeners: list[tuple[str, str, Any]] = field(default_factory=list)
    mode: str = "off"
    warnings: list[str] = field(default_factory=list)
    media_at: str = ""  # where the media socket is mounted, when not media/<name>
    answer_at: str = ""  # where the answer is mounted, when not answer/<name>

    @property
    def media_path(self) -> str:
        return self.media_at or f"media/{self.name}"

    @property
    def answer_path(self) -> str:
        return self.answer_at or f"answer/{self.name}"
