"""Plivo's side of an Audio Stream (one JSON text frame per message), as a simulated caller needs it.

  caller -> daemon  start, media every 20 ms, dtmf, playedStream (a checkpoint's answer),
                    clearedAudio (a clearAudio's answer)
  daemon -> caller  playAudio{media}, checkpoint{name}, clearAudio

Plivo numbers every message with ``sequenceNumber`` from 1 and media with ``chunk`` from
1; every message after ``start`` names the stream in ``streamId``. A checkpoint is
answered once the audio before it has played; a clear drops the queued audio and its
checkpoints unanswered ("playedStream will only be emitted if the preceding events were
played successfully") and is answered with ``clearedAudio``. The caller hangs up by
closing the socket: Plivo's protocol has no message for it.

Plivo does not sign the upgrade: a daemon with an auth token admits the stream by the
media token in the stream URL its answer gave (``CallSetup.parameters`` may carry the
answer's ``contentType``; dial the answer's URL, with its ``call`` as the call id).
"""

from __future__ import annotations

import binascii
import json
import random
import string
import uuid
from dataclasses import dataclass, field
from typing import ClassVar

from voiced.audio import MULAW_8K, AudioFormat
from voiced.carrier.codec import Codec
from voiced.carrier.plivo.wire import DEFAULT_CONTENT_TYPE, audio_format, split_content_type
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
from voiced.caller.carriers.json_messages import bad, open_message

_COMPACT = (",", ":")
_b64 = binascii.b2a_base64


def _account_id() -> str:
    # Plivo's auth IDs: "MA" and 18 upper-case letters and digits.
    return "MA" + "".join(random.choices(string.ascii_uppercase + string.digits, k=18))


@dataclass
class PlivoStream:
    """One call's Plivo Audio Stream: the messages Plivo sends, and a reader for the daemon's."""

    name: ClassVar[str] = "plivo"
    title: ClassVar[str] = "Plivo Audio Streams"
    transport: ClassVar[Transport] = "websocket"
    path: ClassVar[str] = "/media/plivo"
    answers_markers: ClassVar[bool] = True
    clear_answers_markers: ClassVar[bool] = False
    secret_env: ClassVar[str] = ""  # the upgrade is not signed: the stream URL carries the token

    account_id: str
    call_uuid: str
    stream_uuid: str
    audio: AudioFormat = MULAW_8K
    sequence: int = 0
    chunk: int = 0
    _to_daemon: Codec = field(init=False, repr=False)
    _from_daemon: Codec = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._to_daemon, self._from_daemon = Codec(self.audio), Codec(self.audio)
        self._media_head = ',"streamId":' + json.dumps(self.stream_uuid) + ',"media":{"track":"inbound","chunk":'

    @classmethod
    def new_call(cls, setup: CallSetup) -> PlivoStream:
        encoding, rate = split_content_type(setup.parameters.get("contentType", DEFAULT_CONTENT_TYPE))
        return cls(setup.account_id or _account_id(), setup.call_id or str(uuid.uuid4()), str(uuid.uuid4()),
                   audio_format(encoding, rate))

    @property
    def call_id(self) -> str:
        return self.call_uuid

    @property
    def stream_id(self) -> str:
        return self.stream_uuid

    @property
    def content_type(self) -> str:
        return "audio/x-mulaw" if self.audio.encoding == "mulaw" else "audio/x-l16"

    # -- the messages Plivo sends -------------------------------------------------
    def _numbered(self, event: str, **body: object) -> str:
        self.sequence += 1
        return json.dumps({"event": event, "sequenceNumber": self.sequence, "streamId": self.stream_uuid, **body},
                          separators=_COMPACT)

    def start(self) -> str:
        self.sequence += 1
        return json.dumps({
            "event": "start",
            "sequenceNumber": self.sequence,
            "start": {
                "callId": self.call_uuid,
                "streamId": self.stream_uuid,
                "accountId": self.account_id,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": self.content_type, "sampleRate": self.audio.sample_rate},
            },
            "extra_headers": "",
        }, separators=_COMPACT)

    def media(self, ulaw: bytes, timestamp_ms: int) -> str:
        # Built by hand, not json.dumps: a caller sends fifty a second and the load
        # generator runs hundreds of callers.
        self.sequence = sequence = self.sequence + 1
        self.chunk = chunk = self.chunk + 1
        audio = ulaw if self._to_daemon.passthrough else self._to_daemon.encode(ulaw)
        payload = _b64(audio, newline=False).decode("ascii")
        return (f'{{"event":"media","sequenceNumber":{sequence}{self._media_head}{chunk},'
                f'"timestamp":"{timestamp_ms}","payload":"{payload}"}}}}')

    def dtmf(self, digit: str, timestamp_ms: int = 0) -> str:
        return self._numbered("dtmf", dtmf={"track": "inbound", "digit": digit, "timestamp": str(timestamp_ms)})

    def played_stream(self, name: str) -> str:
        return self._numbered("playedStream", name=name)

    def cleared_audio(self) -> str:
        return self._numbered("clearedAudio")

    # -- the carrier port -------------------------------------------------------------
    def upgrade_headers(self, signed_url: str) -> dict[str, str]:
        return {}

    def opening(self) -> list[Outbound]:
        return [self.start()]

    speech = media

    def digit(self, digit: str) -> list[Outbound]:
        return [self.dtmf(digit)]

    def marker_played(self, name: str) -> list[Outbound]:
        return [self.played_stream(name)]

    def hang_up(self) -> list[Outbound]:
        return []

    def read(self, data: bytes, is_binary: bool) -> list[DaemonEvent]:
        opened = open_message(data, is_binary, "Plivo", ("streamId",), self.stream_uuid)
        if isinstance(opened, list):
            return opened
        msg, event, events = opened
        if event == "playAudio":
            return events + self._play_audio(msg.get("media"))
        if event == "checkpoint":
            name = msg.get("name")
            if not isinstance(name, str):
                return events + bad("checkpoint lacks 'name'")
            return events + [Marker(name)]
        if event == "clearAudio":
            return events + [Clear(), SendBack(self.cleared_audio())]
        return events + [Problem(f"daemon sent a {event!r} message, which Plivo does not accept")]

    def _play_audio(self, media: object) -> list[DaemonEvent]:
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            return bad("playAudio lacks media.payload")
        if media.get("contentType") != self.content_type or media.get("sampleRate") != self.audio.sample_rate:
            # Plivo plays what the stream was opened with; another format would be noise.
            return bad(f"playAudio as {media.get('contentType')}/{media.get('sampleRate')} on a "
                        f"{self.content_type}/{self.audio.sample_rate} stream")
        try:
            audio = binascii.a2b_base64(media["payload"], strict_mode=True)
        except (binascii.Error, ValueError):
            return bad("playAudio payload is not base64")
        if self.audio.bytes_per_sample == 2 and len(audio) % 2:
            return bad("playAudio payload is not whole 16-bit samples")
        return [Audio(audio if self._from_daemon.passthrough else self._from_daemon.decode(audio))]
