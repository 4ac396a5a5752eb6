"""Vonage's side of a Voice API WebSocket, as a simulated caller needs it.

  caller -> daemon  text websocket:connected (content-type and the NCCO's headers) first,
                    binary 16-bit PCM every 20 ms, text websocket:dtmf, websocket:notify
                    (the echo of a notify once the audio before it has played),
                    websocket:cleared (the answer to a clear)
  daemon -> caller  binary 16-bit PCM frames, text {"action":"clear"} and
                    {"action":"notify","payload":{...}}

The headers are what voiced's NCCO would have put in the connect endpoint: ``uuid``,
``conversation_uuid``, ``from``, ``to`` and, with the signature secret, the per-call media
token; the upgrade then carries a JWT signed with that secret, as Vonage sends it when the
NCCO asks for ``authorization: {"type": "vonage"}``. The audio rate is 16 kHz unless the
parameters carry another ``content-type`` (``--param content-type=audio/l16;rate=8000``).
Vonage's guide does not say whether a clear answers pending notifies: this caller assumes
it drops them, the stricter case for the daemon.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from voiced.carrier import media_token
from voiced.carrier.codec import Codec
from voiced.carrier.vonage import wire
from voiced.carrier.vonage.signature import sign_hs256
from voiced.caller.carriers.base import (
    Audio,
    CallSetup,
    Clear,
    DaemonEvent,
    Marker,
    Outbound,
    Problem,
    SendBack,
    Transport,
)

_COMPACT = (",", ":")
_TOKEN_TTL_S = 300  # what voiced's NCCO gives a token
_KEY_PRESS_MS = 260  # the duration in Vonage's own example
CLEARED = json.dumps({"event": wire.EVENT_CLEARED}, separators=_COMPACT)


@dataclass
class VonageStream:
    """One call's Vonage WebSocket: the messages Vonage sends, and a reader for the daemon's."""

    name: ClassVar[str] = "vonage"
    title: ClassVar[str] = "Vonage Voice API WebSocket"
    transport: ClassVar[Transport] = "websocket"
    path: ClassVar[str] = "/media/vonage"
    answers_markers: ClassVar[bool] = True
    clear_answers_markers: ClassVar[bool] = False
    secret_env: ClassVar[str] = "VONAGE_SIGNATURE_SECRET"

    uuid: str
    conversation_uuid: str
    headers: dict[str, str]
    content_type: str = wire.content_type(16000)
    secret: str | None = field(default=None, repr=False)
    now: float = 0.0

    def __post_init__(self) -> None:
        audio = wire.audio_format(self.content_type)
        if audio is None:
            raise ValueError(f"voiced-call cannot speak Vonage audio {self.content_type!r} "
                             f"(audio/l16;rate=8000, 16000 or 24000)")
        self.frame_bytes = audio.bytes_per_ms() * 20
        self._encoder, self._decoder = Codec(audio), Codec(audio)  # one per direction: each keeps its state
        self._payloads: dict[str, list[Any]] = {}  # marker name -> the notify payloads to echo, in order

    @classmethod
    def new_call(cls, setup: CallSetup) -> VonageStream:
        call_uuid = setup.call_id or str(uuid.uuid4())
        conversation = f"CON-{uuid.uuid4()}"
        parameters = dict(setup.parameters)
        kind = parameters.pop("content-type", wire.content_type(16000))
        headers = {"uuid": call_uuid, "conversation_uuid": conversation, "from": setup.from_number,
                   "to": setup.to_number, **parameters}
        if setup.secret and media_token.PARAMETER not in headers:
            headers[media_token.PARAMETER] = media_token.issue(setup.secret, call_uuid, setup.now, _TOKEN_TTL_S)
        return cls(call_uuid, conversation, headers, kind, secret=setup.secret, now=setup.now)

    @property
    def call_id(self) -> str:
        return self.uuid

    @property
    def stream_id(self) -> str:
        return self.conversation_uuid

    # -- the messages Vonage sends ----------------------------------------------------
    def connected(self) -> str:
        return json.dumps({"event": wire.EVENT_CONNECTED, "content-type": self.content_type, **self.headers},
                          separators=_COMPACT)

    def upgrade_headers(self, signed_url: str) -> dict[str, str]:
        if not self.secret:
            return {}
        claims = {"iat": int(self.now), "jti": str(uuid.uuid4()), "iss": "Vonage", "application_id": "voiced-call"}
        return {"Authorization": f"Bearer {sign_hs256(claims, self.secret)}"}

    def opening(self) -> list[Outbound]:
        return [self.connected()]

    def speech(self, ulaw: bytes, timestamp_ms: int) -> Outbound | None:
        return self._encoder.encode(ulaw)

    def digit(self, digit: str) -> list[Outbound]:
        return [json.dumps({"event": wire.EVENT_DTMF, "digit": digit, "duration": _KEY_PRESS_MS},
                           separators=_COMPACT)]

    def marker_played(self, name: str) -> list[Outbound]:
        queued = self._payloads.get(name)
        payload = queued.pop(0) if queued else {"name": name}
        if queued == []:
            del self._payloads[name]
        return [json.dumps({"event": wire.EVENT_NOTIFY, "payload": payload}, separators=_COMPACT)]

    def hang_up(self) -> list[Outbound]:
        return []  # Vonage just closes the socket when the caller hangs up

    def read(self, data: bytes, is_binary: bool) -> list[DaemonEvent]:
        if is_binary:
            if not data or len(data) % self.frame_bytes:
                return [Problem(f"daemon sent {len(data)} bytes of audio; Vonage takes {self.frame_bytes}-byte "
                                f"frames")]
            events: list[DaemonEvent] = []
            if len(data) != self.frame_bytes:
                events.append(Problem(f"daemon sent {len(data) // self.frame_bytes} frames in one message; "
                                      f"Vonage takes one 20 ms frame per message"))
            return events + [Audio(self._decoder.decode(data))]
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            return [Problem(f"daemon sent a bad message: not JSON: {str(e)[:100]}")]
        action = message.get("action") if isinstance(message, dict) else None
        if action == "clear":
            return [Clear(), SendBack(CLEARED)]
        if action == "notify":
            payload = message.get("payload")
            name = payload.get("name") if isinstance(payload, dict) else None
            if not isinstance(name, str):
                return [Problem("daemon sent a notify whose payload has no marker 'name'")]
            self._payloads.setdefault(name, []).append(payload)
            return [Marker(name)]
        return [Problem(f"daemon sent {str(action)[:40]!r}, which Vonage's WebSocket does not take "
                        f"(clear, notify, binary audio)")]
