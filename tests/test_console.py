"""The console's rules: when it exists, who may use it, the softphone's media tokens,
and the per-call event stream (bounded per client, fed by the CallHub). All in memory."""

from __future__ import annotations

import json
from types import SimpleNamespace

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.console import TWILIO, fake_service, record, settings
from voiced.call.record import CallHub, CallRecord, TurnRecord
from voiced.carrier.twilio.signature import twilio_signature
from voiced.config import Settings
from voiced.console import console_urls
from voiced.console.auth import (
    OFF, OPEN, TOKEN, ConsoleAuth, MediaTokens, console_mode, safe_next,
)
from voiced.endpoints import is_loopback_endpoint
from voiced.console.stream import CallEventStreams, encode_event
from voiced.web import build_site


class ModeTests(SynchronousTestCase):
    def test_loopback_endpoints(self) -> None:
        for endpoint in ("tcp:8080:interface=127.0.0.1", "tcp:1:interface=localhost", "tcp6:80:interface=\\:\\:1",
                         "ssl:443:privateKey=k.pem:interface=127.0.0.2", "unix:/run/voiced.sock"):
            self.assertTrue(is_loopback_endpoint(endpoint), endpoint)
        for endpoint in ("tcp:8080", "tcp:8080:interface=0.0.0.0", "tcp:80:interface=10.0.0.5", "tcp6:80",
                         "systemd:domain=INET:index=0"):
            self.assertFalse(is_loopback_endpoint(endpoint), endpoint)

    def test_on_for_development_only(self) -> None:
        self.assertEqual(console_mode(settings()), OPEN)  # the default listen is loopback
        self.assertEqual(console_mode(settings(TWILIO)), OFF)
        self.assertEqual(console_mode(settings(listen=["tcp:8080"])), OFF)
        self.assertEqual(console_mode(settings(listen=["tcp:8080:interface=127.0.0.1", "tcp:9"])), OFF)

    def test_a_console_token_turns_it_on_behind_the_token(self) -> None:
        self.assertEqual(console_mode(settings({**TWILIO, "VOICED_CONSOLE_TOKEN": "c"})), TOKEN)
        self.assertEqual(console_mode(settings({"VOICED_CONSOLE_TOKEN": "c"}, ["tcp:8080"])), TOKEN)

    def test_the_token_is_a_secret(self) -> None:
        s = settings({"VOICED_CONSOLE_TOKEN": "SECRET-CONSOLE"})
        self.assertNotIn("SECRET-CONSOLE", s.summary())
        self.assertNotIn("SECRET-CONSOLE", repr(s))

    def test_urls_for_the_start_up_line(self) -> None:
        self.assertEqual(console_urls(("tcp:8080:interface=127.0.0.1", "ssl:8443", "unix:/x")),
                         ["http://127.0.0.1:8080/console/phone", "https://127.0.0.1:8443/console/phone"])

    def test_login_redirects_stay_in_the_console(self) -> None:
        self.assertEqual(safe_next("/console/calls?call=CA1"), "/console/calls?call=CA1")
        for evil in ("https://evil.example/", "//evil.example/console/", "/console/..//evil", "/health", None):
            self.assertEqual(safe_next(evil), "/console/phone", evil)


class AuthTests(SynchronousTestCase):
    def test_open_mode_needs_nothing(self) -> None:
        self.assertEqual(ConsoleAuth(OPEN, "").check(None, None, 0), 200)

    def test_bearer(self) -> None:
        auth = ConsoleAuth(TOKEN, "s3cret")
        self.assertEqual(auth.check(None, None, 0), 401)
        self.assertEqual(auth.check("Bearer s3cret", None, 0), 200)
        self.assertEqual(auth.check("Bearer s3cre", None, 0), 403)
        self.assertEqual(auth.check("Basic s3cret", None, 0), 403)

    def test_session_cookie(self) -> None:
        auth = ConsoleAuth(TOKEN, "s3cret")
        cookie = auth.new_session(now=1000)
        self.assertNotIn("s3cret", cookie)
        self.assertEqual(auth.check(None, cookie, 1001), 200)
        self.assertEqual(auth.check(None, cookie, 1000 + 13 * 3600), 403)  # expired
        expires, mac = cookie.split(".")
        self.assertEqual(auth.check(None, f"{int(expires) + 3600}.{mac}", 1001), 403)  # tampered expiry
        self.assertEqual(ConsoleAuth(TOKEN, "other").check(None, cookie, 1001), 403)  # the token changed

    def test_off_admits_nobody(self) -> None:
        self.assertEqual(ConsoleAuth(OFF, "").check("Bearer ", None, 0), 403)


class MediaTokenTests(SynchronousTestCase):
    def test_once_and_only_in_time(self) -> None:
        tokens = MediaTokens(ttl_s=60)
        token = tokens.mint(now=100)
        self.assertIsNone(tokens.redeem(token, now=110))
        self.assertEqual(tokens.redeem(token, now=111), "already used")
        self.assertEqual(tokens.redeem(tokens.mint(now=100), now=161), "expired")

    def test_forgeries(self) -> None:
        tokens = MediaTokens(ttl_s=60)
        expires, nonce, mac = tokens.mint(now=100).split(".")
        self.assertEqual(tokens.redeem(f"{int(expires) + 60000}.{nonce}.{mac}", now=110), "bad signature")
        flipped = "1" if mac[-1] == "0" else "0"  # a changed last character, whatever it was
        self.assertEqual(tokens.redeem(f"{expires}.{nonce}.{mac[:-1]}{flipped}", now=110), "bad signature")
        self.assertEqual(tokens.redeem("garbage", now=110), "malformed")
        other = MediaTokens(ttl_s=60)  # another process's key
        self.assertEqual(tokens.redeem(other.mint(now=100), now=110), "bad signature")


class FakeStreamRequest:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer = None
        self.finished: Deferred = Deferred()
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def registerProducer(self, producer, streaming) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def notifyFinish(self) -> Deferred:
        return self.finished

    def finish(self) -> None:
        self.aborted = True

    def events(self) -> list[tuple[str, dict]]:
        out = []
        for chunk in b"".join(self.written).decode().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in chunk.splitlines() if ": " in line)
            if "event" in lines:
                out.append((lines["event"], json.loads(lines["data"])))
        return out


class EventStreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hub = CallHub()
        self.clock = MemoryReactorClock()
        self.streams = CallEventStreams(self.hub, self.clock, max_clients=3, max_backlog=2000)

    def test_snapshot_then_the_calls_events(self) -> None:
        call = record()
        self.hub.call_event(call, "start", {})
        call.turns.append(TurnRecord(1, "what time do you open"))
        request = FakeStreamRequest()
        self.streams.open(request, "CA1")
        self.hub.call_event(call, "caller", {"turn": 1, "text": "what time do you open", "event": None})
        self.hub.call_event(record("CA2"), "caller", {"turn": 1, "text": "another call", "event": None})
        self.hub.call_event(call, "reply", {"turn": 1, "text": "We are open at 8."})
        self.hub.call_event(call, "turn", {"turn": 1, "metrics": {"TOTAL_LATENCY_MS": 700}})
        self.hub.call_event(call, "end", {})
        kinds = [kind for kind, _ in request.events()]
        self.assertEqual(kinds, ["snapshot", "caller", "reply", "turn", "end"])
        snapshot = request.events()[0][1]
        self.assertEqual((snapshot["live"], snapshot["record"]["turns"][0]["caller_text"]),
                         (True, "what time do you open"))
        self.assertEqual(request.events()[3][1], {"call": "CA1", "turn": 1, "metrics": {"TOTAL_LATENCY_MS": 700}})
        self.assertEqual(request.events()[4][1]["record"]["call_sid"], "CA1")

    def test_an_ended_or_unknown_call(self) -> None:
        call = record()
        self.hub.call_event(call, "start", {})
        self.hub.call_event(call, "end", {})
        ended, unknown = FakeStreamRequest(), FakeStreamRequest()
        self.streams.open(ended, "CA1")
        self.streams.open(unknown, "CA9")  # the softphone opens its stream before its call starts
        self.assertEqual(ended.events()[0][1]["live"], False)
        self.assertEqual(unknown.events()[0][1]["record"], None)
        self.hub.call_event(record("CA9"), "start", {})
        self.assertEqual(unknown.events()[-1][0], "start")

    def test_a_viewer_that_stops_reading_is_bounded_then_dropped(self) -> None:
        request = FakeStreamRequest()
        client = self.streams.open(request, None)
        client.pauseProducing()  # the HTTP channel's buffer is full
        before = len(request.written)
        call = record()
        self.hub.call_event(call, "caller", {"turn": 1, "text": "x" * 500, "event": None})
        self.assertEqual(len(request.written), before, "nothing is written while paused")
        client.resumeProducing()
        self.assertEqual(request.events()[-1][0], "caller")  # the backlog is delivered in order
        client.pauseProducing()
        for n in range(10):
            self.hub.call_event(call, "caller", {"turn": n, "text": "x" * 500, "event": None})
        self.assertTrue(client.dropped and request.aborted)
        self.assertNotIn(client, self.streams.clients)

    def test_a_closed_viewer_is_forgotten(self) -> None:
        request = FakeStreamRequest()
        client = self.streams.open(request, "CA1")
        request.finished.callback(None)
        self.assertNotIn(client, self.streams.clients)
        self.hub.call_event(record(), "caller", {"turn": 1, "text": "hi", "event": None})  # no error

    def test_at_most_max_clients(self) -> None:
        for _ in range(3):
            self.assertIsNotNone(self.streams.open(FakeStreamRequest(), None))
        self.assertIsNone(self.streams.open(FakeStreamRequest(), None))

    def test_heartbeat_while_someone_watches(self) -> None:
        request = FakeStreamRequest()
        self.streams.open(request, None)
        self.clock.advance(15)
        self.assertIn(b": keep-alive\n\n", request.written)
        request.finished.callback(None)
        self.clock.advance(15)
        self.assertFalse(self.streams._heartbeat)

    def test_one_line_per_event(self) -> None:
        self.assertEqual(encode_event("bot", {"text": "a\nb"}), b'event: bot\ndata: {"text":"a\\nb"}\n\n')


def http(service: SimpleNamespace, path: str, method: str = "GET", headers: dict[str, str] | None = None,
         body: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through the real site (routing, auth, headers), in memory."""
    from voiced.carrier import twilio

    site = build_site(service, [twilio.carrier(service, service.settings, service.console)], service.console)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8080", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    raw = transport.value()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    parsed = {}
    for line in header_lines:
        key, _, value = line.partition(b": ")
        parsed[key.lower()] = value
    if parsed.get(b"transfer-encoding") == b"chunked":
        payload = _dechunk(payload)
    channel.connectionLost(None)
    return int(status_line.split()[1]), parsed, payload


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_text, _, rest = data.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        out, data = out + rest[:size], rest[size + 2:]
    return out


class RoutesTests(SynchronousTestCase):
    def test_off_is_404(self) -> None:
        service = fake_service(TWILIO)
        for path in ("/console/phone", "/console/api/calls", "/console/login", "/console/static/phone.js"):
            self.assertEqual(http(service, path)[0], 404, path)

    def test_open_on_loopback(self) -> None:
        service = fake_service()
        status, headers, body = http(service, "/console/phone")
        self.assertEqual(status, 200)
        self.assertIn(b'id="transcript"', body)
        self.assertIn(b"script-src 'self'", headers[b"content-security-policy"])
        status, headers, _ = http(service, "/console/static/softphone.js")
        self.assertEqual((status, headers[b"content-type"]), (200, b"text/javascript; charset=utf-8"))
        self.assertEqual(json.loads(http(service, "/console/api/calls")[2]), {"now": 0.0, "live": [], "recent": []})

    def test_token_mode_needs_the_token_everywhere(self) -> None:
        service = fake_service({**TWILIO, "VOICED_CONSOLE_TOKEN": "letmein"})
        for path in ("/console/phone", "/console/calls", "/console/api/calls", "/console/api/calls/CA1/events",
                     "/console/static/phone.js", "/console/"):
            self.assertEqual(http(service, path)[0], 401, path)
            self.assertEqual(http(service, path, headers={"Authorization": "Bearer nope"})[0], 403, path)
        self.assertEqual(http(service, "/console/api/media-token", "POST")[0], 401)
        status, headers, body = http(service, "/console/phone", headers={"Accept": "text/html"})
        self.assertEqual(status, 401)
        self.assertIn(b'name="token"', body)  # a browser gets the login form
        self.assertEqual(http(service, "/console/api/calls", headers={"Authorization": "Bearer letmein"})[0], 200)
        self.assertEqual(http(service, "/console/login")[0], 200)
        self.assertEqual(http(service, "/console/static/console.css")[0], 200)  # the login form's style

    def test_login_sets_a_session_cookie(self) -> None:
        service = fake_service({"VOICED_CONSOLE_TOKEN": "letmein"})
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, _ = http(service, "/console/login", "POST", form, b"token=wrong&next=/console/calls")
        self.assertEqual(status, 403)
        status, headers, _ = http(service, "/console/login", "POST", form, b"token=letmein&next=/console/calls")
        self.assertEqual((status, headers[b"location"]), (303, b"/console/calls"))
        cookie = headers[b"set-cookie"].decode()
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=strict", cookie)
        self.assertNotIn("letmein", cookie)
        session = cookie.split(";")[0]
        self.assertEqual(http(service, "/console/calls", headers={"Cookie": session})[0], 200)

    def test_media_tokens_are_minted_for_the_same_origin_only(self) -> None:
        service = fake_service()
        status, _, body = http(service, "/console/api/media-token", "POST", {"Origin": "http://127.0.0.1:8080"})
        self.assertEqual(status, 200)
        self.assertIsNone(service.console.media_tokens.redeem(json.loads(body)["token"], 0.0))
        status, _, _ = http(service, "/console/api/media-token", "POST", {"Origin": "https://evil.example"})
        self.assertEqual(status, 403)


def upgrade(path: str = "/media", params: dict | None = None, headers: dict | None = None) -> ConnectionRequest:
    return ConnectionRequest("tcp:127.0.0.1:5555", headers or {}, "voice.example.com", path, params or {}, 13,
                             None, [], [])


class _Admission:
    """The daemon as built by voiced.app, and the upgrade checks of Twilio's /media on it."""

    def __init__(self, env: dict[str, str]) -> None:
        from voiced.app import build
        from voiced.carrier.twilio.protocol import TwilioAdmission, TwilioMediaStreamFactory

        settings = Settings.load({}, env)
        self.daemon = build(settings, reactor=MemoryReactorClock())
        self.daemon.ready = True
        self.clock = self.daemon.clock
        self.console = self.daemon.getServiceNamed("console")
        self.factory = TwilioMediaStreamFactory(
            self.daemon, TwilioAdmission(settings.twilio_auth_token, settings.public_host, self.console))

    def admit_connection(self, request: ConnectionRequest) -> None:
        self.factory.buildProtocol(None).onConnect(request)


class MediaAdmissionTests(SynchronousTestCase):
    """Twilio's /media upgrade: a console token stands in for a Twilio signature, as strictly."""

    def service(self, env: dict[str, str]) -> _Admission:
        return _Admission(env)

    def test_with_both_tokens(self) -> None:
        service = self.service({**TWILIO, "VOICED_CONSOLE_TOKEN": "letmein"})
        e = self.assertRaises(ConnectionDeny, service.admit_connection, upgrade())
        self.assertEqual(e.code, 403)
        token = service.console.media_tokens.mint(service.clock.seconds())
        service.admit_connection(upgrade(params={"console_token": [token]}))  # admitted
        e = self.assertRaises(ConnectionDeny, service.admit_connection, upgrade(params={"console_token": [token]}))
        self.assertEqual(e.code, 403)  # spent
        e = self.assertRaises(ConnectionDeny, service.admit_connection, upgrade(params={"console_token": ["x.y.z"]}))
        self.assertEqual(e.code, 403)
        signature = twilio_signature("twilio-secret", "wss://voice.example.com/media", None)
        service.admit_connection(upgrade(headers={"x-twilio-signature": signature}))  # Twilio still gets in
        service.admit_connection(upgrade(headers={"x-signalwire-signature": signature}))  # and SignalWire

    def test_console_off_ignores_the_parameter(self) -> None:
        service = self.service(TWILIO)
        token = MediaTokens().mint(0)
        e = self.assertRaises(ConnectionDeny, service.admit_connection, upgrade(params={"console_token": [token]}))
        self.assertEqual(e.code, 403)  # no console: only a Twilio signature admits

    def test_development_admits_the_softphone_and_checks_its_token(self) -> None:
        service = self.service({})
        service.admit_connection(upgrade())
        token = service.console.media_tokens.mint(service.clock.seconds())
        service.admit_connection(upgrade(params={"console_token": [token]}))
        self.assertRaises(ConnectionDeny, service.admit_connection, upgrade(params={"console_token": [token]}))


class GrafanaDashboardTests(SynchronousTestCase):
    def test_every_query_names_a_metric_voiced_exports(self) -> None:
        import os
        import re

        from prometheus_client.exposition import generate_latest

        from voiced.metrics import Metrics

        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "contrib", "grafana",
                            "voiced.json")
        with open(path) as f:
            dashboard = json.load(f)
        exported = set(re.findall(r"^(voiced_\w+)", generate_latest(Metrics().registry).decode(), re.M))
        queried = {name for panel in dashboard["panels"] for target in panel["targets"]
                   for name in re.findall(r"voiced_\w+", target["expr"])}
        self.assertTrue(queried)
        self.assertEqual(queried - exported, set())


class CallsViewTests(SynchronousTestCase):
    def test_live_and_recent_with_states(self) -> None:
        service = fake_service()
        hub = service.call_hub
        live, ended = record("CA-live", "asterisk", "local"), record("CA-ended")
        hub.call_event(ended, "start", {})
        ended.turns.append(TurnRecord(1, "hello", metrics={"TOTAL_LATENCY_MS": 800}))
        ended.ended_at, ended.end_reason = 60.0, "websocket closed code=1000"
        hub.call_event(ended, "end", {})
        hub.call_event(live, "start", {})
        service.calls = [SimpleNamespace(call_id="CA-live", state=SimpleNamespace(name="SPEAKING"))]
        service.clock.advance(75)
        table = service.console.calls.table()
        self.assertEqual([(c["call_sid"], c["carrier"], c["playout"], c["state"], c["duration_s"])
                          for c in table["live"]],
                         [("CA-live", "asterisk", "local", "speaking", 25.0)])
        self.assertEqual([(c["call_sid"], c["carrier"], c["playout"], c["turns"], c["duration_s"])
                          for c in table["recent"]],
                         [("CA-ended", "twilio", "carrier", 1, 10.0)])
        one = service.console.calls.call("CA-ended")
        self.assertEqual((one["live"], one["record"]["turns"][0]["metrics"]), (False, {"TOTAL_LATENCY_MS": 800}))
        self.assertEqual((one["summary"]["carrier"], one["record"]["carrier"]), ("twilio", "twilio"))
        self.assertIsNone(service.console.calls.call("CA-unknown"))


# A Hebrew line as an LLM writes it: gershayim, an RLM after the full stop, a question mark.
HEBREW_CALLER = 'שמעתי. מה השעות בת"א?'
HEBREW_REPLY = "אנחנו פתוחים משמונה.\u200f תודה!"


class CallLanguageTests(SynchronousTestCase):
    """The page marks every line up with the call's language (lang=, and dir="auto"), so
    it needs the language with the words: on the call's JSON and its stream's snapshot."""

    def hebrew_call(self, service: SimpleNamespace) -> CallRecord:
        call = record("CA-he")
        service.call_hub.call_event(call, "start", {})
        call.turns.append(TurnRecord(1, HEBREW_CALLER, reply_text=HEBREW_REPLY, heard_text=HEBREW_REPLY))
        return call

    def test_the_calls_json_says_the_daemons_language_and_keeps_the_text(self) -> None:
        service = fake_service({"VOICED_LANGUAGE": "he-IL"})
        self.hebrew_call(service)
        status, headers, body = http(service, "/console/api/calls/CA-he")
        self.assertEqual(status, 200)
        call = json.loads(body)
        self.assertEqual(call["language"], "he-IL")
        turn = call["record"]["turns"][0]
        self.assertEqual((turn["caller_text"], turn["reply_text"]), (HEBREW_CALLER, HEBREW_REPLY))

    def test_the_stream_snapshot_says_the_language_before_any_line(self) -> None:
        service = fake_service({"VOICED_LANGUAGE": "he-IL"})
        call = self.hebrew_call(service)
        request = FakeStreamRequest()
        service.console.streams.open(request, "CA-he")
        service.call_hub.call_event(call, "reply", {"turn": 1, "text": HEBREW_REPLY})
        (first, snapshot), (kind, reply) = request.events()
        self.assertEqual((first, snapshot["language"], snapshot["live"]), ("snapshot", "he-IL", True))
        self.assertEqual((kind, reply["text"]), ("reply", HEBREW_REPLY))
        unknown = FakeStreamRequest()  # the softphone's stream opens before its call exists
        service.console.streams.open(unknown, "CA-later")
        self.assertEqual(unknown.events()[0][1]["language"], "he-IL")

    def test_an_english_daemon_says_so(self) -> None:
        service = fake_service()
        service.call_hub.call_event(record(), "start", {})
        self.assertEqual(service.console.calls.call("CA1")["language"], "en-US")
        request = FakeStreamRequest()
        service.console.streams.open(request, "CA1")
        self.assertEqual(request.events()[0][1]["language"], "en-US")
