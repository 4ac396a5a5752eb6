"""Telnyx's side of a media stream (one JSON text frame per message), as a simulated caller needs it.

  caller -> daemon  connected, start, media every 20 ms, dtmf, mark (echo), stop
  daemon -> caller  media{payload}, mark{name}, clear

Shaped as Telnyx's AsyncAPI documents them: ``stream_id`` at the top level,
``sequence_number`` counting every message after ``connected`` from "1", media
``chunk`` from "1" and ``timestamp`` in ms, all as strings; ``start`` names the call
by ``call_control_id`` and its audio by ``media_format`` (PCMU 8 kHz here, Telnyx's
default). Telnyx echoes a ``mark`` once the audio before it has played, and every
queued one at once on ``clear``. It does not sign the upgrade; ``start`` carries, in
``custom_parameters``, the ``voicedToken`` voiced's TeXML would have handed Telnyx.
"""

from __future__ import annotations

import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ClassVar

from voiced.audio import SAMPLE_RATE
from voiced.carrier import media_token
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
_TOKEN_TTL_S = 300  # what voiced's TeXML gives a token by default


@dataclass
class TelnyxStream:
    """One call's Telnyx media stream: the messages Telnyx sends, and a reader for the daemon's."""

    name: ClassVar[str] = "telnyx"
    title: ClassVar[str] = "Telnyx media streaming"
    transport: ClassVar[Transport] = "websocket"
    path: ClassVar[str] = "/media/telnyx"
    answers_markers: ClassVar[bool] = True
    clear_answers_markers: ClassVar[bool] = True
    secret_env: ClassVar[str] = "VOICED_TELNYX_MEDIA_SECRET"

    user_id: str
    call_control_id: str
    stream_id: str
    from_number: str
    to_number: str
    custom_parameters: dict[str, str]
    sequence: int = 0
    chunk: int = 0

    def __post_init__(self) -> None:
        self._media_tail = '"},"stream_id":' + json.dumps(self.stream_id) + "}"

    @classmethod
    def new_call(cls, setup: CallSetup) -> TelnyxStream:
        call_control_id = setup.call_id or "v3:" + new_id("")
        parameters = dict(setup.parameters)
        if setup.secret and media_token.PARAMETER not in parameters:
            parameters[media_token.PARAMETER] = media_token.issue(setup.secret, call_control_id, setup.now,
                                                                  _TOKEN_TTL_S)
        return cls(setup.account_id or str(uuid.uuid4()), call_control_id, str(uuid.uuid4()), setup.from_number,
                   setup.to_number, parameters)

    @property
    def call_id(self) -> str:
        return self.call_control_id

    # -- the messages Telnyx sends -------------------------------------------------
    def _numbered(self, event: str, **body: object) -> str:
        self.sequence += 1
        msg = {"event": event, "sequence_number": str(self.sequence), **body, "stream_id": self.stream_id}
        return json.dumps(msg, separators=_COMPACT)

    def connected(self) -> str:
        return json.dumps({"event": "connected", "version": "1.0.0"}, separators=_COMPACT)

    def start(self) -> str:
        return self._numbered("start", start={
            "user_id": self.user_id,
            "call_control_id": self.call_control_id,
            "call_session_id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.call_control_id)),
            "from": self.from_number,
            "to": self.to_number,
            "tags": [],
            "custom_parameters": self.custom_parameters,
            "media_format": {"encoding": "PCMU", "sample_rate": SAMPLE_RATE, "channels": 1},
        })

    def media(self, ulaw: bytes, timestamp_ms: int) -> str:
        # Byte for byte what json.dumps makes of the message, at a fraction of the cost: a
        # caller sends fifty a second, and the load benches run hundreds of callers.
        self.sequence = sequence = self.sequence + 1
        self.chunk = chunk = self.chunk + 1
        payload = _b64(ulaw, newline=False).decode("ascii")
        return (f'{{"event":"media","sequence_number":"{sequence}","media":{{"track":"inbound","chunk":"{chunk}",'
                f'"timestamp":"{timestamp_ms}","payload":"{payload}{self._media_tail}')

    def dtmf(self, digit: str) -> str:
        occurred = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return self._numbered("dtmf", occurred_at=occurred, dtmf={"digit": digit})

    def mark(self, name: str) -> str:
        return self._numbered("mark", mark={"name": name})

    def stop(self) -> str:
        return self._numbered("stop", stop={"user_id": self.user_id, "call_control_id": self.call_control_id})

    # -- the carrier port -------------------------------------------------------------
    def upgrade_headers(self, signed_url: str) -> dict[str, str]:
        return {}  # Telnyx signs its webhooks, not the media upgrade

    def opening(self) -> list[Outbound]:
        return [self.connected(), self.start()]

    speech = media  # the caller's 8 kHz mu-law frames are PCMU as they are

    def digit(self, digit: str) -> list[Outbound]:
        return [self.dtmf(digit)]

    def marker_played(self, name: str) -> list[Outbound]:
        return [self.mark(name)]

    def hang_up(self) -> list[Outbound]:
        return [self.stop()]

    def read(self, data: bytes, is_binary: bool) -> list[DaemonEvent]:
        return read_media_mark_clear(data, is_binary, "Telnyx", ("stream_id",), self.stream_id)
