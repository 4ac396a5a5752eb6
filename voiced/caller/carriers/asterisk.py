"""Asterisk chan_websocket's side of a media WebSocket, as a simulated caller needs it:
what Asterisk sends when ``Dial(WebSocket/voiced/c(ulaw)f(json))`` connects to voiced.

  Asterisk -> daemon  MEDIA_START (text), the caller's audio (binary, 160 bytes of mu-law
                      per 20 ms), DTMF_END, MEDIA_MARK_PROCESSED (the echo of MARK_MEDIA)
  daemon -> Asterisk  the bot's audio (binary), MARK_MEDIA, FLUSH_MEDIA, HANGUP

The JSON control format of Asterisk 20.18 / 22.8 / 23.2 and later by default, or the
plain-text one (``plain_text=True``: an older Asterisk, no mark echoes). Asterisk
answers a MARK_MEDIA once the audio queued before it has been played; FLUSH_MEDIA
drops its queue with the marks in it, unanswered. A caller hanging up closes the
socket with no message first. The upgrade carries the shared secret the way
``websocket_client.conf``'s username/password sends it: ``Authorization: Basic``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import ClassVar

from voiced.carrier.asterisk.admission import authorization_header
from voiced.caller.carriers.base import (
    Audio,
    CallSetup,
    Clear,
    DaemonEvent,
    HangUp,
    Marker,
    Outbound,
    Problem,
    Transport,
)

_COMPACT = (",", ":")
# Commands Asterisk takes that change nothing a caller hears.
_SILENT_COMMANDS = frozenset({"ANSWER", "START_MEDIA_BUFFERING", "STOP_MEDIA_BUFFERING", "GET_STATUS",
                              "REPORT_QUEUE_DRAINED", "PAUSE_MEDIA", "CONTINUE_MEDIA", "SET_MEDIA_DIRECTION"})


def _unique_id() -> str:
    """Shaped as Asterisk's channel unique ids: ``<epoch seconds>.<sequence>``."""
    n = uuid.uuid4().int
    return f"{1_700_000_000 + n % 100_000_000}.{n % 100_000}"


@dataclass
class AsteriskWebSocket:
    """One call's chan_websocket connection: what Asterisk sends, and a reader for the daemon's."""

    name: ClassVar[str] = "asterisk"
    title: ClassVar[str] = "Asterisk chan_websocket"
    transport: ClassVar[Transport] = "websocket"
    path: ClassVar[str] = "/media/asterisk"
    answers_markers: ClassVar[bool] = True  # per call (__post_init__): only a JSON Asterisk has MARK_MEDIA
    clear_answers_markers: ClassVar[bool] = False
    secret_env: ClassVar[str] = "VOICED_ASTERISK_SECRET"

    connection_id: str = ""
    channel_id: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    plain_text: bool = False
    secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.answers_markers = not self.plain_text

    @classmethod
    def new_call(cls, setup: CallSetup, plain_text: bool = False) -> AsteriskWebSocket:
        # What a dialplan sets before the Dial (Set(__VOICED_FROM=${CALLERID(num)})...) arrives
        # in MEDIA_START's channel_variables, next to Asterisk's own.
        variables = {"__VOICED_FROM": setup.from_number, "__VOICED_TO": setup.to_number}
        for name, value in setup.parameters.items():
            variables["__" + (name if name.startswith("VOICED_") else "VOICED_" + name)] = value
        connection_id = setup.call_id or str(uuid.uuid4())
        variables["MEDIA_WEBSOCKET_CONNECTION_ID"] = connection_id
        variables["MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE"] = "160"
        return cls(connection_id, _unique_id(), variables, plain_text, setup.secret)

    @property
    def call_id(self) -> str:
        return self.channel_id  # the daemon's call id: MEDIA_START's channel_id

    @property
    def stream_id(self) -> str:
        return self.connection_id

    # -- what Asterisk sends -----------------------------------------------------------
    def _event(self, event: str, **fields: object) -> str:
        if self.plain_text:
            return " ".join([event] + [f"{k}:{v}" for k, v in fields.items()])
        return json.dumps({"event": event, "channel_id": self.channel_id, **fields}, separators=_COMPACT)

    def media_start(self) -> str:
        channel = f"WebSocket/voiced-{self.channel_id.rpartition('.')[2]:0>8}"
        if self.plain_text:
            return self._event("MEDIA_START", connection_id=self.connection_id, channel=channel,
                               channel_id=self.channel_id, format="ulaw", optimal_frame_size=160, ptime=20)
        return json.dumps({"event": "MEDIA_START", "connection_id": self.connection_id, "channel": channel,
                           "channel_id": self.channel_id, "format": "ulaw", "optimal_frame_size": 160,
                           "ptime": 20, "channel_variables": self.variables}, separators=_COMPACT)

    # -- the carrier port ----------------------------------------------------------------
    def upgrade_headers(self, signed_url: str) -> dict[str, str]:
        return {"Authorization": authorization_header(self.secret)} if self.secret else {}

    def opening(self) -> list[Outbound]:
        return [self.media_start()]

    def speech(self, ulaw: bytes, timestamp_ms: int) -> Outbound | None:
        return ulaw  # c(ulaw): Asterisk's own 20 ms frames, no header

    def digit(self, digit: str) -> list[Outbound]:
        if self.plain_text:
            return [f"DTMF_END digit:{digit} channel_id:{self.channel_id}"]
        return [self._event("DTMF_END", digit=digit)]

    def marker_played(self, name: str) -> list[Outbound]:
        if self.plain_text:
            return [f"MEDIA_MARK_PROCESSED {name}"]
        return [self._event("MEDIA_MARK_PROCESSED", correlation_id=name)]

    def hang_up(self) -> list[Outbound]:
        return []  # Asterisk closes the socket when the caller's channel hangs up

    def read(self, data: bytes, is_binary: bool) -> list[DaemonEvent]:
        if is_binary:
            if len(data) % 160:
                return [Problem(f"daemon sent {len(data)} bytes of audio: Asterisk drops a partial "
                                f"160-byte frame")]
            return [Audio(bytes(data))]
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            return [Problem("daemon sent a text frame that is not UTF-8")]
        if self.plain_text:
            command, _, correlation_id = text.partition(" ")
        else:
            try:
                message = json.loads(text)
            except (ValueError, RecursionError) as e:
                return [Problem(f"daemon sent a command that is not JSON: {str(e)[:80]} (Asterisk answers ERROR)")]
            if not isinstance(message, dict) or not isinstance(message.get("command"), str):
                return [Problem("daemon sent a JSON message without 'command'")]
            command, correlation_id = message["command"], message.get("correlation_id", "")
        if command == "MARK_MEDIA":
            if not self.answers_markers:
                return [Problem("daemon sent MARK_MEDIA to a plain-text Asterisk")]
            return [Marker(str(correlation_id))]
        if command == "FLUSH_MEDIA":
            return [Clear()]
        if command == "HANGUP":
            return [HangUp("HANGUP")]
        if command in _SILENT_COMMANDS:
            return []
        return [Problem(f"daemon sent {command[:40]!r}, which chan_websocket does not know")]
