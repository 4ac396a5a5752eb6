"""Twilio's side of a Media Stream (one JSON text frame per message), as a simulated caller needs it.

  caller -> daemon  connected, start, media every 20 ms, dtmf, mark (echo), stop
  daemon -> caller  media{payload}, mark{name}, clear

Messages are numbered as Twilio numbers them: ``connected`` carries no number, every
later message counts ``sequenceNumber`` from "1", media ``chunk`` counts from "1".
Twilio echoes a ``mark`` once the audio queued before it has played, and every
pending one at once on ``clear``. The upgrade is signed with X-Twilio-Signature,
and ``start`` carries the ``voicedToken`` voiced's TwiML would have handed Twilio.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from typing import ClassVar

from voiced.audio import SAMPLE_RATE
from voiced.carrier import media_token
from voiced.carrier.twilio.signature import twilio_signature
from voiced.caller.carriers.base import (
    CallSetup,
    DaemonEvent,
    Outbound,
    Transport,
    new_id,
)
from voiced.caller.carriers.json_messages import read_media_mark_clear

_COMPACT = (",", ":")
_b64 = binascii.b2a_base64
# The media message's fixed parts, in json.dumps's order and spacing.
_MEDIA_HEAD = '{"event":"media","sequenceNumber":"'
_MEDIA_CHUNK = '","media":{"track":"inbound","chunk":"'
_MEDIA_TIMESTAMP = '","timestamp":"'
_MEDIA_PAYLOAD = '","payload":"'
_TOKEN_TTL_S = 300  # what voiced's TwiML gives a token


@dataclass
class TwilioStream:
    """One call's Twilio Media Stream: the messages Twilio sends, and a reader for the daemon's."""

    name: ClassVar[str] = "twilio"
    title: ClassVar[str] = "Twilio Media Streams"
    transport: ClassVar[Transport] = "websocket"
    path: ClassVar[str] = "/media"
    answers_markers: ClassVar[bool] = True
    clear_answers_markers: ClassVar[bool] = True
    secret_env: ClassVar[str] = "TWILIO_AUTH_TOKEN"

    account_sid: str
    call_sid: str
    stream_sid: str
    custom_parameters: dict[str, str]
    sequence: int = 0
    chunk: int = 0
    auth_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._media_sid = '","streamSid":' + json.dumps(self.stream_sid)[:-1] + _MEDIA_CHUNK

    @classmethod
    def new_call(cls, setup: CallSetup) -> TwilioStream:
        call_sid = setup.call_id or new_id("CA")
        # voiced's TwiML hands Twilio From and To as <Parameter>s, and Twilio passes them back in start.
        parameters = {"From": setup.from_number, "To": setup.to_number, **setup.parameters}
        if setup.secret and media_token.PARAMETER not in parameters:
            parameters[media_token.PARAMETER] = media_token.issue(setup.secret, call_sid, setup.now, _TOKEN_TTL_S)
        return cls(setup.account_id or new_id("AC"), call_sid, new_id("MZ"), parameters, auth_token=setup.secret)

    @property
    def call_id(self) -> str:
        return self.call_sid

    @property
    def stream_id(self) -> str:
        return self.stream_sid

    # -- the messages Twilio sends -------------------------------------------------
    def _numbered(self, event: str, **body: object) -> str:
        self.sequence += 1
        msg = {"event": event, "sequenceNumber": str(self.sequence), "streamSid": self.stream_sid, **body}
        return json.dumps(msg, separators=_COMPACT)

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}, separators=_COMPACT)

    def start(self) -> str:
        return self._numbered(
            "start",
            start={
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": self.custom_parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1},
            },
        )

    def media(self, ulaw: bytes, timestamp_ms: int) -> str:
        # Byte for byte what json.dumps makes of the message, at a sixth of the cost: a
        # caller sends fifty a second, and bench/loadgen.py runs hundreds of callers.
        self.sequence = sequence = self.sequence + 1
        self.chunk = chunk = self.chunk + 1
        payload = _b64(ulaw, newline=False).decode("ascii")
        return (f"{_MEDIA_HEAD}{sequence}{self._media_sid}{chunk}{_MEDIA_TIMESTAMP}{timestamp_ms}"
                f'{_MEDIA_PAYLOAD}{payload}"}}}}')

    def dtmf(self, digit: str) -> str:
        return self._numbered("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def mark(self, name: str) -> str:
        return self._numbered("mark", mark={"name": name})

    def stop(self) -> str:
        return self._numbered("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})

    # -- the carrier port -------------------------------------------------------------
    def upgrade_headers(self, signed_url: str) -> dict[str, str]:
        return {"X-Twilio-Signature": twilio_signature(self.auth_token, signed_url)} if self.auth_token else {}

    def opening(self) -> list[Outbound]:
        return [self.connected(), self.start()]

    speech = media  # Twilio takes the caller's 8 kHz mu-law frames as they are

    def digit(self, digit: str) -> list[Outbound]:
        return [self.dtmf(digit)]

    def marker_played(self, name: str) -> list[Outbound]:
        return [self.mark(name)]

    def hang_up(self) -> list[Outbound]:
        return [self.stop()]

    def read(self, data: bytes, is_binary: bool) -> list[DaemonEvent]:
        return read_media_mark_clear(data, is_binary, "Twilio", ("streamSid",), self.stream_sid)
