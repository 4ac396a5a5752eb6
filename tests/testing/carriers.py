"""Carrier sockets in process: Twilio's wire (handshake, client frames, the frames the server wrote),
the call core a carrier sees (RecordingService, RecordingCall), a Twilio media socket Harness, and the
CallLink's RecordingWire."""

from __future__ import annotations

import json

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from voiced.audio import MULAW_8K, AudioFormat
from voiced.carrier.twilio.protocol import TwilioAdmission, TwilioMediaStreamFactory
from voiced.config import Settings
from voiced.metrics import Metrics
from voiced.stt.base import stt_input


HANDSHAKE = (
    b"GET /media HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(payload: bytes, opcode: int = 0x1, mask: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    n = len(payload)
    header = bytes([0x80 | opcode, 0x80 | n]) if n < 126 else bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the unmasked frames the server wrote."""
    frames = []
    while data:
        opcode, n, pos = data[0] & 0x0F, data[1] & 0x7F, 2
        if n == 126:
            n, pos = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, pos = int.from_bytes(data[2:10], "big"), 10
        frames.append((opcode, data[pos : pos + n]))
        data = data[pos + n :]
    return frames


class RecordingCall:
    def __init__(self, stt_audio=MULAW_8K):
        self.events = []
        self.reasons = []  # what close was told
        self.stt_audio = stt_audio  # what the service chose for its STT (MULAW_8K: no 16 kHz copy)

    def start(self):
        self.events.append("start")

    def on_media(self, ulaw, stt_audio=None):
        self.events.append(("media", len(ulaw)) if stt_audio is None else ("media", len(ulaw), len(stt_audio)))
        self.stt_fed = stt_audio

    def on_mark(self, name):
        self.events.append(("mark", name))

    def on_dtmf(self, digit):
        self.events.append(("dtmf", digit))

    def close(self, reason=""):
        self.events.append("close")
        self.reasons.append(reason)


class RecordingService:
    """The call core a carrier sees (``voiced.carrier.base.CallCore``), recording its calls."""

    def __init__(self, settings=None, clock=None, stt_formats=frozenset({MULAW_8K})):
        self.settings = settings or Settings()
        self.clock = clock or Clock()
        self.stt_formats = stt_formats  # its STT engine's (by default one that takes 8 kHz mu-law only)
        self.metrics = Metrics()
        self.calls = []
        self.ended = []

    def admit(self):
        pass

    def new_call(self, start, transport, playout="carrier"):
        call = RecordingCall(stt_input(start.audio, self.stt_formats))  # chosen as VoicedService does
        self.calls.append((start, transport, call))
        return call

    def call_ended(self, call):
        self.ended.append(call)


def twilio_factory(service, clock, console=None):
    """Twilio's media socket factory over ``service``, admitting as ``service.settings`` say."""
    service.clock = clock
    settings = service.settings
    return TwilioMediaStreamFactory(service, TwilioAdmission(settings.twilio_auth_token, settings.public_host, console))


def start_message(seq=1, **media_format):
    fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1, **media_format}
    return json.dumps({"event": "start", "sequenceNumber": str(seq), "streamSid": "MZ1",
                       "start": {"streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
                                 "customParameters": {"From": "+1"}, "mediaFormat": fmt}}).encode()


def start_with(params):
    message = json.loads(start_message())
    message["start"]["customParameters"] = params
    return json.dumps(message).encode()


class Harness(SynchronousTestCase):
    settings = Settings()

    def setUp(self):
        self.patch(txaio.config, "loop", Clock())
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.service = RecordingService(self.settings)
        self.proto = twilio_factory(self.service, self.clock).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        handshake = HANDSHAKE
        if self.settings.twilio_auth_token:  # the upgrade Twilio signs, as it would
            from voiced.carrier.twilio.signature import twilio_signature

            signature = twilio_signature(self.settings.twilio_auth_token, f"wss://{self.settings.public_host}/media")
            handshake = handshake.replace(b"\r\n\r\n", f"\r\nX-Twilio-Signature: {signature}\r\n\r\n".encode())
        self.proto.dataReceived(handshake)
        self.assertIn(b"101 Switching Protocols", self.transport.value())
        self.transport.clear()

    def send(self, payload, opcode=0x1):
        self.proto.dataReceived(client_frame(payload, opcode))

    def close_code(self):
        closes = [p for op, p in server_frames(self.transport.value()) if op == 0x8]
        return int.from_bytes(closes[0][:2], "big") if closes else None

    def media_events(self):
        return [e for e in self.service.calls[0][2].events if isinstance(e, tuple) and e[0] == "media"]


class RecordingWire:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def write_audio(self, payload: bytes) -> None:
        self.sent.append(("audio", len(payload)))

    def write_mark(self, name: str) -> None:
        self.sent.append(("mark", name))

    def write_clear(self) -> None:
        self.sent.append(("clear",))

    def end_call(self) -> None:
        self.sent.append(("end",))

    def close(self, code: int, reason: str) -> None:
        self.sent.append(("close", code))


SLIN_16K = AudioFormat("pcm_s16le", 16000)


# ---- Telnyx ----
TELNYX_CALL = "v3:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"


def telnyx_start(params=None, encoding="PCMU", rate=8000, call=TELNYX_CALL, stream="S1"):
    return json.dumps({"event": "start", "sequence_number": "1", "stream_id": stream,
                       "start": {"user_id": "u1", "call_control_id": call, "from": "+13122010094",
                                 "to": "+13122123456", "custom_parameters": params or {},
                                 "media_format": {"encoding": encoding, "sample_rate": rate, "channels": 1}}}).encode()
