"""End to end: real daemons (twistd, separate processes), real WebSockets, real
local engines, calls placed by voiced-call's library with Twilio's timing."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BARGE_IN_MS, Daemon, constructions, line, logged, patient_client_factory, shared_daemon
from voiced.caller.client import place_call


class LocalEngineCallTests(TestCase):
    """One daemon on the local engines for these tests: each looks at its own calls."""

    timeout = 180

    def setUp(self) -> None:
        self.daemon = shared_daemon()

    def bot_lines(self, call_sid: str) -> list[str]:
        return [entry for entry in self.daemon.lines(" BOT ") if f"call={call_sid}" in entry]

    def turn_lines(self, call_sid: str) -> list[str]:
        return [entry for entry in self.daemon.lines(" TURN ") if f"call={call_sid}" in entry]

    @inlineCallbacks
    def test_three_turn_call_greeting_hours_goodbye(self):
        report = yield place_call(reactor, self.daemon.media_url,
                                  [line("What time do you open?"), line("Thank you, goodbye.")])
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot, "the bot should hang up after its goodbye")
        self.assertEqual(report.closed_code, 1000)
        self.assertEqual(len(report.replies), 3)  # greeting, hours, goodbye
        yield logged(self.daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
        bot = self.bot_lines(report.call_sid)
        self.assertIn("Riverside Clinic", bot[0])
        self.assertIn("Monday to Friday from 8 AM to 6 PM", bot[1])
        self.assertIn("actions=EndCall", bot[2])
        turns = self.turn_lines(report.call_sid)
        self.assertEqual(len(turns), 2, "one TURN line per answered turn")
        for turn_no, entry in enumerate(turns, 1):
            self.assertRegex(entry, rf"TURN call={report.call_sid} turn={turn_no} STT_FIRST_PARTIAL_MS=- "
                                    r"STT_FINAL_MS=\d+ AGENT_FIRST_SENTENCE_MS=\d+ TTS_READY_MS=\d+ TOTAL_LATENCY_MS=\d+ PLAYBACK_START_MS=\d+$")
        # What the caller saw agrees with what the daemon measured, within the network's share.
        for observed in report.turns:
            self.assertIsNotNone(observed.first_reply_audio_ms)

    @inlineCallbacks
    def test_barge_in_gets_clear_quickly(self):
        report = yield place_call(reactor, self.daemon.media_url, [
            line("Where are you located?"),
            line("Sorry, what time do you open on Saturday?", barge_in_ms=600),
            line("Goodbye."),
        ])
        self.assertEqual(report.errors, [])
        self.assertEqual(len(report.clears), 1)
        barge = report.turns[1]
        self.assertIsNotNone(barge.clear_after_onset_ms)
        self.assertLessEqual(barge.clear_after_onset_ms, BARGE_IN_MS + 100)
        self.assertTrue(any(r.interrupted for r in report.replies))
        bot = self.bot_lines(report.call_sid)
        self.assertTrue(any("8 AM" in entry for entry in bot), "the interrupting question is answered")
        self.assertTrue(report.hung_up_by_bot)

    @inlineCallbacks
    def test_twenty_calls_one_app_start_and_flat_constructions(self):
        before = constructions(self.daemon)
        self.assertIn("stt_whisper_model", before)
        reports = yield DeferredList(
            [place_call(reactor, self.daemon.media_url, [line("Goodbye.")], reply_timeout_s=30, max_duration_s=90)
             for _ in range(20)],
            consumeErrors=True,
        )
        completed = [r for ok, r in reports if ok and r.hung_up_by_bot]
        self.assertEqual(len(completed), 20, [r.errors for ok, r in reports if ok])
        self.assertEqual(constructions(self.daemon), before)
        self.assertEqual(len(self.daemon.lines("APP_START")), 1)
        # Each call ends on the daemon's side as the caller hears its close, or a moment after.
        for _ in range(50):
            if self.daemon.get_json("/health")["active_calls"] == 0:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self.daemon.get_json("/health")["active_calls"], 0)


class RawSocket(WebSocketClientProtocol):
    def onOpen(self) -> None:
        for message in self.factory.messages:
            self.sendMessage(message, isBinary=isinstance(message, bytes) and not message.startswith(b"{"))
        self.factory.received = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.received.append(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # Who dropped an unclean close, and why: what a failed close-code check needs to say.
        unclean = None if wasClean else f"dropped by us: {self.droppedByMe}; {self.wasNotCleanReason}"
        if not self.factory.closed.called:
            self.factory.closed.callback((code, self.factory.received, unclean))


def raw_session(url: str, port: int, messages: list[bytes], linger_s: float = 1.0) -> Deferred:
    """Send ``messages``; fire with (close code, messages received, why it was unclean or None)."""
    factory = patient_client_factory(url)
    factory.protocol = RawSocket
    factory.messages = messages
    factory.closed = Deferred()
    factory.received = []

    def connected(protocol: RawSocket) -> None:
        def give_up() -> None:
            if not factory.closed.called:
                protocol.sendClose(1000)

        timer = reactor.callLater(linger_s, give_up)
        factory.closed.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])

    TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory).addCallback(connected)
    return factory.closed


START = json.dumps({
    "event": "start", "sequenceNumber": "1", "streamSid": "MZbad",
    "start": {"streamSid": "MZbad", "accountSid": "AC1", "callSid": "CAbad", "tracks": ["inbound"],
              "customParameters": {}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                                      "channels": 1}},
}).encode()


class HttpAndProtocolTests(TestCase):
    """The HTTP routes, and bad input: a clear error, never the daemon or another call."""

    timeout = 120

    def setUp(self) -> None:
        self.daemon = shared_daemon(env={"VOICED_PUBLIC_URL": "https://voice.example.com:8443"})

    @inlineCallbacks
    def test_malformed_json_is_logged_and_the_call_survives(self):
        start = START.replace(b"CAbad", b"CAmalformed")  # the daemon is shared: this call's own sid
        code, received, unclean = yield raw_session(self.daemon.media_url, self.daemon.port,
                                                    [start, b"{not json", b'{"event":"media","media":{}}'], linger_s=1.5)
        self.assertEqual(code, 1000, unclean)  # closed by us after lingering, not by the daemon
        self.assertTrue(any(b'"event":"media"' in m for m in received), "the greeting still arrives")
        self.assertTrue(any("PROTOCOL_ERROR call=CAmalformed" in entry
                            for entry in self.daemon.lines("PROTOCOL_ERROR")))

    @inlineCallbacks
    def test_binary_frames_close_with_4002(self):
        code, _, _ = yield raw_session(self.daemon.media_url, self.daemon.port, [b"\x00\x01binary"])
        self.assertEqual(code, 4002)

    @inlineCallbacks
    def test_unsupported_media_format_closes_with_4001(self):
        bad = START.replace(b'"sampleRate": 8000', b'"sampleRate": 16000')
        code, _, _ = yield raw_session(self.daemon.media_url, self.daemon.port, [bad])
        self.assertEqual(code, 4001)

    def test_http_routes(self):
        status, body = self.daemon.get("/health/warmup")
        warmup = json.loads(body)
        self.assertEqual(status, 200)
        self.assertIsInstance(warmup["tts_warmup_ms"], int)
        self.assertIn("stt_whisper", warmup["engines_ms"])
        self.assertEqual(self.daemon.get("/nowhere")[0], 404)
        self.assertEqual(self.daemon.get("/twiml")[0], 405)
        self.assertEqual(self.daemon.get("/health")[0], 200)

    def test_twiml_webhook_connects_the_call_to_the_public_media_url(self):
        form = urllib.parse.urlencode({"CallSid": "CA9", "From": "+15551234", "To": "+15559876"}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.daemon.port}/twiml", data=form)
        with urllib.request.urlopen(request, timeout=5) as response:
            self.assertEqual(response.headers["content-type"], "text/xml; charset=utf-8")
            twiml = response.read().decode()
        self.assertIn('<Stream url="wss://voice.example.com:8443/media">', twiml)
        self.assertIn('<Parameter name="From" value="+15551234"/>', twiml)
        self.assertIn('<Parameter name="To" value="+15559876"/>', twiml)

    def test_oversized_body_is_refused_with_413(self):
        request = urllib.request.Request(f"http://127.0.0.1:{self.daemon.port}/twiml", data=b"From=" + b"9" * 300_000)
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        self.assertEqual(caught.exception.code, 413)
        self.assertEqual(self.daemon.get("/health")[0], 200)


class DeploymentTests(TestCase):
    """`twistd -ny voiced.tac` and daemonized `twistd voiced` serve calls like `twistd -n voiced`."""

    timeout = 120

    @inlineCallbacks
    def test_daemonized_twistd_serves_calls(self):
        daemon = Daemon(daemonize=True)
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        report = yield place_call(reactor, daemon.media_url, [line("Goodbye.")])
        self.assertTrue(report.hung_up_by_bot, report.errors)
        self.assertEqual(len(daemon.lines("APP_START")), 1)
        self.assertEqual(len((yield logged(daemon, " TURN ", 1))), 1)
        self.assertTrue(daemon.lines("reactor class: voiced.reactor.LeanEpollReactor"), "voiced's reactor by default")

    @inlineCallbacks
    def test_tac_file_serves_calls(self):
        daemon = Daemon(tac=True)
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        report = yield place_call(reactor, daemon.media_url, [line("Goodbye.")])
        self.assertTrue(report.hung_up_by_bot, report.errors)
        self.assertEqual(len(daemon.lines("APP_START")), 1)
        self.assertTrue(daemon.lines("reactor class: voiced.reactor.LeanEpollReactor"), "voiced's reactor by default")


class SignatureTests(TestCase):
    """With VOICED_TWILIO_AUTH_TOKEN, only requests Twilio signed get through."""

    timeout = 120
    token = "e2e-auth-token"
    public = "https://voice.example.com"

    def setUp(self) -> None:
        self.daemon = shared_daemon(env={"VOICED_TWILIO_AUTH_TOKEN": self.token, "VOICED_PUBLIC_URL": self.public})

    @inlineCallbacks
    def test_media_upgrade_needs_a_valid_signature(self):
        rejected_before = len(self.daemon.lines("MEDIA_REJECTED"))  # the daemon is shared
        unsigned = yield place_call(reactor, self.daemon.media_url, [line("Goodbye.")])
        self.assertFalse(unsigned.connected)
        self.assertIn("403", " ".join(unsigned.errors))
        forged = yield place_call(reactor, self.daemon.media_url, [line("Goodbye.")], auth_token="wrong-token",
                                  signed_url="wss://voice.example.com/media")
        self.assertFalse(forged.connected)
        signed = yield place_call(reactor, self.daemon.media_url, [line("Goodbye.")], auth_token=self.token,
                                  signed_url="wss://voice.example.com/media")
        self.assertTrue(signed.hung_up_by_bot, signed.errors)
        refused = yield logged(self.daemon, "MEDIA_REJECTED", rejected_before + 2)
        self.assertEqual(len(refused) - rejected_before, 2)

    def test_twiml_webhook_needs_a_valid_signature(self):
        from twilio.request_validator import RequestValidator

        form = {"CallSid": "CA9", "From": "+15551234", "To": "+15559876"}
        body = urllib.parse.urlencode(form).encode()
        url = f"http://127.0.0.1:{self.daemon.port}/twiml"
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=5)
        self.assertEqual(caught.exception.code, 403)
        signature = RequestValidator(self.token).compute_signature(self.public + "/twiml", form)
        request = urllib.request.Request(url, data=body, headers={"X-Twilio-Signature": signature})
        with urllib.request.urlopen(request, timeout=5) as response:
            self.assertIn(b'<Stream url="wss://voice.example.com/media">', response.read())
