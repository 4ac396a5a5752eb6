"""Plivo's media socket and answer URL in process: real Autobahn framing and a real
twisted.web Site on StringTransports, a Clock for timers, a recording call core.
Admission (a bad or missing media token or signature refused with 403 before any call
state), the messages both ways, audio formats, and the hard limits."""

import base64
import json
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.testing.carriers import RecordingService, client_frame, server_frames
from voiced.carrier import media_token
from voiced.audio import AudioFormat
from voiced.carrier.link import MAX_PROTOCOL_ERRORS
from voiced.carrier.plivo import wire
from voiced.carrier.plivo.answer import PlivoAnswer
from voiced.carrier.plivo.protocol import PlivoAdmission, PlivoMediaStreamFactory
from voiced.carrier.plivo.signature import plivo_signature

NOW = 1_700_000_000
CALL = "0e6c8a3c-1b1a-4f53-9d54-5a9f0e0d4c11"
STREAM = "87654321-4321-4321-4321-cba987654321"


def handshake(query: dict[str, str] | None = None) -> bytes:
    path = "/media/plivo" + ("?" + urlencode(query) if query else "")
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def signed_query(token: str = "tok", call: str = CALL, from_number: str = "+15551234", to_number: str = "+15559876",
                 now: float = NOW, for_call: str | None = None) -> dict[str, str]:
    subject = wire.token_subject(for_call or call, from_number, to_number)
    return {"call": call, "from": from_number, "to": to_number,
            media_token.PARAMETER: media_token.issue(token, subject, now, 300)}


def start(call=CALL, stream=STREAM, encoding="audio/x-mulaw", rate=8000, seq=1, extra=""):
    return json.dumps({"event": "start", "sequenceNumber": seq,
                       "start": {"callId": call, "streamId": stream, "accountId": "MAXXXXXXXXXXXXXXXXXX",
                                 "tracks": ["inbound"], "mediaFormat": {"encoding": encoding, "sampleRate": rate}},
                       "extra_headers": extra}).encode()


def media(chunk, payload=b"\xff" * 160, stream=STREAM, seq=None):
    return json.dumps({"event": "media", "sequenceNumber": seq or chunk + 1, "streamId": stream,
                       "media": {"track": "inbound", "timestamp": str(NOW * 1000 + chunk * 20), "chunk": chunk,
                                 "payload": base64.b64encode(payload).decode()}}).encode()


class Harness(SynchronousTestCase):
    auth_token = ""
    content_type = wire.DEFAULT_CONTENT_TYPE

    def setUp(self):
        self.patch(txaio.config, "loop", Clock())  # Autobahn's own timers never fire here
        self.clock = Clock()
        self.clock.advance(NOW)
        self.service = RecordingService(clock=self.clock)

    def connect(self, query=None):
        factory = PlivoMediaStreamFactory(self.service, PlivoAdmission(self.auth_token, self.content_type))
        self.proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport()
        self.transport.unregisterProducer = lambda: None  # Autobahn's drop path; StringTransport has none
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(handshake(query))
        answer = self.transport.value()
        self.transport.clear()
        return answer

    def open(self, query=None):
        self.assertIn(b"101 Switching Protocols", self.connect(query))

    def send(self, payload, opcode=0x1):
        self.proto.dataReceived(client_frame(payload, opcode))

    def sent(self):
        return [json.loads(p) for op, p in server_frames(self.transport.value()) if op == 0x1]

    def close_code(self):
        closes = [p for op, p in server_frames(self.transport.value()) if op == 0x8]
        return int.from_bytes(closes[0][:2], "big") if closes else None

    def call_events(self):
        return self.service.calls[0][2].events


class StreamTests(Harness):
    def setUp(self):
        super().setUp()
        self.open({"call": CALL, "from": "+15551234", "to": "+15559876"})

    def test_messages_reach_the_call_and_replies_are_plivos(self):
        self.send(start(extra="userId=12345;sessionId=abc"))
        started, transport, call = self.service.calls[0]
        self.assertEqual((started.carrier, started.call_id, started.stream_id, started.from_number, started.to_number),
                         ("plivo", CALL, STREAM, "+15551234", "+15559876"))
        self.assertEqual(started.custom_parameters, {"userId": "12345", "sessionId": "abc", "From": "+15551234",
                                                     "To": "+15559876"})
        self.assertEqual(started.audio, AudioFormat("mulaw", 8000))
        self.assertEqual(self.service.calls[0][2].events, ["start"])
        self.send(media(1))
        self.send(json.dumps({"event": "playedStream", "sequenceNumber": 3, "streamId": STREAM,
                              "name": "r1.start"}).encode())
        self.send(json.dumps({"event": "dtmf", "sequenceNumber": 4, "streamId": STREAM,
                              "dtmf": {"track": "inbound", "digit": "5", "timestamp": "1"}}).encode())
        self.send(json.dumps({"event": "clearedAudio", "sequenceNumber": 5, "streamId": STREAM}).encode())
        self.send(b'{"event":"somethingNew"}')
        self.assertEqual(call.events[1:], [("media", 160), ("mark", "r1.start"), ("dtmf", "5")])
        transport.send_audio(b"\x7f" * 320)
        transport.send_mark("r1.s0")
        transport.send_clear()
        self.assertEqual(self.sent(), [
            {"event": "playAudio", "streamId": STREAM,
             "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000,
                       "payload": base64.b64encode(b"\x7f" * 320).decode()}},
            {"event": "checkpoint", "streamId": STREAM, "name": "r1.s0"},
            {"event": "clearAudio", "streamId": STREAM},
        ])
        self.assertIsNone(self.close_code())
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 0)

    def test_sixteen_khz_l16_is_converted_both_ways(self):
        self.send(start(encoding="audio/x-l16", rate=16000))
        started, transport, call = self.service.calls[0]
        self.assertEqual(started.audio, AudioFormat("pcm_s16le", 16000))
        self.send(media(1, payload=b"\x00\x01" * 320))  # 20 ms of 16 kHz 16-bit audio
        self.assertEqual(call.events[1:], [("media", 160)])  # the core's 8 kHz mu-law
        transport.send_audio(b"\xff" * 160)
        (played,) = self.sent()
        self.assertEqual((played["media"]["contentType"], played["media"]["sampleRate"]), ("audio/x-l16", 16000))
        self.assertEqual(len(base64.b64decode(played["media"]["payload"])), 640)

    def test_audio_in_any_chunk_size_reaches_the_call_in_whole_frames(self):
        self.send(start())
        for chunk, size in enumerate((100, 100, 120, 10, 470), 1):
            self.send(media(chunk, payload=b"\xff" * size))
        self.assertEqual(self.call_events()[1:], [("media", 160), ("media", 160), ("media", 480)])
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 0)

    def test_repeated_late_foreign_and_outbound_track_media_are_dropped(self):
        self.send(media(1))  # before start: counted
        self.send(start())
        self.send(media(1))
        self.send(media(1))  # repeated
        self.send(media(3))
        self.send(media(2))  # late
        self.send(media(4, stream="another-stream"))  # counted
        self.send(json.dumps({"event": "media", "streamId": STREAM,
                              "media": {"track": "outbound", "chunk": 5, "payload": "/w=="}}).encode())
        self.send(json.dumps({"event": "playedStream", "streamId": "another-stream", "name": "x"}).encode())  # counted
        self.send(media(6))
        self.assertEqual(self.call_events()[1:], [("media", 160)] * 3)
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 3)
        self.assertIsNone(self.close_code())

    def test_stop_closes_1000_and_ends_the_call_once(self):
        self.send(start())
        self.send(b'{"event":"stop","streamId":"87654321-4321-4321-4321-cba987654321","reason":"hangup"}')
        self.assertEqual(self.close_code(), 1000)
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.call_events()[-1], "close")
        self.assertEqual(len(self.service.ended), 1)

    def test_the_bots_hang_up_closes_the_stream_1000(self):
        self.send(start())
        self.service.calls[0][1].hang_up()
        self.assertEqual(self.close_code(), 1000)

    def test_no_start_within_ten_seconds_closes_4000(self):
        self.clock.advance(9.9)
        self.assertIsNone(self.close_code())
        self.clock.advance(0.2)
        self.assertEqual(self.close_code(), 4000)

    def test_binary_frame_closes_4002(self):
        self.send(b"\x00\x01", opcode=0x2)
        self.assertEqual(self.close_code(), 4002)

    def test_unsupported_format_closes_4001_without_a_call(self):
        self.send(start(encoding="audio/x-mulaw", rate=16000))
        self.assertEqual(self.close_code(), 4001)
        self.assertEqual(self.service.calls, [])

    def test_malformed_messages_are_counted_then_close_4003(self):
        self.send(start())
        for _ in range(MAX_PROTOCOL_ERRORS - 1):
            self.send(b"{not json")
        self.assertIsNone(self.close_code())
        self.send(b'{"event":"dtmf","streamId":"x","dtmf":{"digit":"?"}}')
        self.assertEqual(self.close_code(), 4003)
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), MAX_PROTOCOL_ERRORS)

    def test_duplicate_starts_count_as_protocol_errors(self):
        self.send(start())
        self.send(start(stream="another"))
        self.assertEqual(len(self.service.calls), 1)
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 1)

    def test_oversized_message_closes_1009(self):
        self.send(start())
        big = b'{"event":"media","x":"' + b"a" * (70 * 1024) + b'"}'
        header = bytes([0x81, 0x80 | 127]) + len(big).to_bytes(8, "big")
        self.proto.dataReceived(header + b"\0\0\0\0" + big)
        self.assertEqual(self.close_code(), 1009)

    def test_a_flood_is_dropped_then_closed_1008(self):
        self.send(start())
        for chunk in range(1, 111):  # 2 s of allowance, then 10 frames over
            self.send(media(chunk))
        self.assertEqual(len(self.call_events()) - 1, 100, "2 s ahead of real time, no more")
        self.assertIsNone(self.close_code())
        for chunk in range(111, 400):
            self.send(media(chunk))
        self.assertEqual(self.close_code(), 1008)


class DefaultFormatTests(Harness):
    content_type = "audio/x-l16;rate=8000"

    def test_a_start_without_a_media_format_takes_the_answers(self):
        self.open()
        self.send(json.dumps({"event": "start", "start": {"callId": CALL, "streamId": STREAM}}).encode())
        self.assertEqual(self.service.calls[0][0].audio, AudioFormat("pcm_s16le", 8000))


class AdmissionTests(Harness):
    auth_token = "tok"

    def refused(self, query):
        answer = self.connect(query)
        self.assertIn(b"403", answer.split(b"\r\n")[0])
        self.assertIsNone(self.proto.link, "no call state for a refused upgrade")
        self.assertEqual(self.service.calls, [])

    def test_a_valid_media_token_admits_its_call(self):
        self.open(signed_query())
        self.send(start())
        started = self.service.calls[0][0]
        self.assertEqual((started.call_id, started.from_number), (CALL, "+15551234"))
        self.assertNotIn(media_token.PARAMETER, started.custom_parameters)

    def test_a_missing_forged_expired_or_other_calls_token_is_refused_with_403(self):
        self.refused(None)
        self.refused({"call": CALL, "from": "+15551234", "to": "+15559876"})
        self.refused({**signed_query(), media_token.PARAMETER: "garbage"})
        self.refused(signed_query(token="wrong"))
        self.refused(signed_query(now=NOW - 301))
        self.refused(signed_query(for_call="another-call"))
        self.refused({**signed_query(), "from": "+15550000"})  # the numbers are bound to the token too

    def test_a_start_for_another_call_closes_1008_before_a_call_exists(self):
        self.open(signed_query())
        self.send(start(call="another-call"))
        self.assertEqual(self.close_code(), 1008)
        self.assertEqual(self.service.calls, [])


# ---- the answer URL ---------------------------------------------------------------------------
def http(site: Site, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    proto = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
    transport = StringTransport()
    proto.makeConnection(transport)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8080", f"Content-Length: {len(body)}", "Connection: close"]
    if method == "POST":
        lines.append("Content-Type: application/x-www-form-urlencoded")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    proto.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    head, _, content = transport.value().partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), content


class AnswerTests(SynchronousTestCase):
    public = "https://voice.example.com"
    form = {"CallUUID": CALL, "From": "+15551234", "To": "+15559876", "Direction": "inbound", "Event": "StartApp"}

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.site = self.make_site("tok", self.public)

    def make_site(self, token, public):
        root, answers = Resource(), Resource()
        answers.putChild(b"plivo", PlivoAnswer(token, public, self.clock, 300, "audio/x-mulaw;rate=8000"))
        root.putChild(b"answer", answers)
        return Site(root)

    def post(self, path="/answer/plivo", form=None, token="tok", nonce="20230615123456789", site=None):
        form = self.form if form is None else form
        params = {k: [v] for k, v in form.items()}
        signature = plivo_signature(token, "POST", self.public + path, nonce, params)
        headers = {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce} if token else {}
        return http(site or self.site, "POST", path, urlencode(form).encode(), headers)

    def stream_url(self, xml: bytes) -> str:
        url = re.search(rb"<Stream [^>]*>([^<]+)</Stream>", xml).group(1).decode().replace("&amp;", "&")
        return url

    def test_a_signed_answer_streams_the_call_with_a_token_that_admits_it(self):
        status, xml = self.post()
        self.assertEqual(status, 200)
        self.assertIn(b'<Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000">', xml)
        self.assertIn(b"</Stream><Hangup/></Response>", xml)
        url = urlsplit(self.stream_url(xml))
        self.assertEqual((url.scheme, url.netloc, url.path), ("wss", "voice.example.com", "/media/plivo"))
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.assertEqual((query["call"], query["from"], query["to"]), (CALL, "+15551234", "+15559876"))
        subject = wire.token_subject(CALL, "+15551234", "+15559876")
        self.assertIsNone(media_token.problem("tok", subject, query[media_token.PARAMETER], NOW + 299))
        self.assertIsNotNone(media_token.problem("tok", subject, query[media_token.PARAMETER], NOW + 301))
        # The socket takes exactly that URL.
        socket = AdmissionTests("test_a_valid_media_token_admits_its_call")
        socket.setUp()
        socket.open(query)

    def test_unsigned_or_wrongly_signed_answers_are_refused(self):
        self.assertEqual(self.post(token="")[0], 403)
        self.assertEqual(self.post(token="wrong")[0], 403)
        status, body = http(self.site, "POST", "/answer/plivo", urlencode(self.form).encode(), {
            "X-Plivo-Signature-V3": plivo_signature("tok", "POST", self.public + "/answer/plivo", "n",
                                                    {k: [v] for k, v in self.form.items()}),
            "X-Plivo-Signature-V3-Nonce": "another-nonce"})
        self.assertEqual(status, 403)
        tampered = dict(self.form, From="+15550000")
        signature = plivo_signature("tok", "POST", self.public + "/answer/plivo", "n",
                                    {k: [v] for k, v in self.form.items()})
        status, _ = http(self.site, "POST", "/answer/plivo", urlencode(tampered).encode(),
                         {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": "n"})
        self.assertEqual(status, 403)

    def test_a_signed_get_answer(self):
        path = "/answer/plivo?" + urlencode(self.form)
        signature = plivo_signature("tok", "GET", self.public + path, "n")
        status, xml = http(self.site, "GET", path, b"", {"X-Plivo-Signature-Ma-V3": f"x,{signature}",
                                                         "X-Plivo-Signature-V3-Nonce": "n"})
        self.assertEqual(status, 200)
        self.assertIn(f"call={CALL}".encode(), xml)

    def test_a_transfer_answers_the_dial(self):
        status, xml = self.post("/answer/plivo?transfer=%2B14155550100")
        self.assertEqual(status, 200)
        self.assertIn(b"<Dial><Number>+14155550100</Number></Dial>", xml)
        status, xml = self.post("/answer/plivo?transfer=" + "sip%3Aalice%40example.com")
        self.assertIn(b"<Dial><User>sip:alice@example.com</User></Dial>", xml)
        self.assertEqual(self.post("/answer/plivo?transfer=%3CHangup%2F%3E")[0], 400)
        self.assertEqual(self.post("/answer/plivo?transfer=%2B14155550100", token="wrong")[0], 403)

    def test_open_mode_answers_without_a_token(self):
        site = self.make_site("", "http://127.0.0.1:8080")
        status, xml = self.post(token="", site=site)
        self.assertEqual(status, 200)
        url = urlsplit(self.stream_url(xml))
        self.assertEqual((url.scheme, url.netloc), ("ws", "127.0.0.1:8080"))
        self.assertNotIn(media_token.PARAMETER, parse_qs(url.query))
