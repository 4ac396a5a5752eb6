"""Who reaches the console of a real daemon, and which media upgrades it admits.

With a Twilio token and no console token /console does not exist (404). With a console
token every console route needs it (401 without, 403 wrong), and a /media upgrade needs a
Twilio signature or a console media token (403 otherwise); a minted token places a real
call once.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon, line, logged, shared_daemon
from voiced.caller.client import place_call

TWILIO = {"VOICED_TWILIO_AUTH_TOKEN": "e2e-twilio-token", "VOICED_PUBLIC_URL": "https://voice.example.com"}
CONSOLE_TOKEN = "e2e-console-token"


def request(daemon: Daemon, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{daemon.port}{path}", method=method, headers=headers or {},
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class ConsoleOffTests(TestCase):
    timeout = 60

    def test_a_twilio_token_without_a_console_token_hides_the_console(self) -> None:
        daemon = Daemon(env=TWILIO)
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        for path in ("/console/phone", "/console/calls", "/console/api/calls", "/console/login"):
            self.assertEqual(request(daemon, path)[0], 404, path)
        self.assertTrue(daemon.lines("CONSOLE off"))


class ConsoleTokenTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        # One daemon for these tests: each counts from where it begins.
        self.daemon = shared_daemon(env={**TWILIO, "VOICED_CONSOLE_TOKEN": CONSOLE_TOKEN})

    def test_every_console_route_needs_the_token(self) -> None:
        bearer = {"Authorization": f"Bearer {CONSOLE_TOKEN}"}
        for path in ("/console/phone", "/console/calls", "/console/api/calls", "/console/static/softphone.js"):
            self.assertEqual(request(self.daemon, path)[0], 401, path)
            self.assertEqual(request(self.daemon, path, headers={"Authorization": "Bearer wrong"})[0], 403, path)
            self.assertEqual(request(self.daemon, path, headers=bearer)[0], 200, path)
        self.assertEqual(request(self.daemon, "/console/api/media-token", "POST")[0], 401)

    @inlineCallbacks
    def test_media_needs_a_twilio_signature_or_a_console_media_token(self):
        before = len(self.daemon.lines("MEDIA_REJECTED"))
        bare = yield place_call(reactor, self.daemon.media_url, [line("Goodbye.")])
        self.assertFalse(bare.connected)
        self.assertIn("403", " ".join(bare.errors))
        forged = yield place_call(reactor, self.daemon.media_url + "?console_token=1.2.3", [line("Goodbye.")])
        self.assertFalse(forged.connected)
        status, body = request(self.daemon, "/console/api/media-token", "POST",
                               {"Authorization": f"Bearer {CONSOLE_TOKEN}"})
        self.assertEqual(status, 200)
        url = f"{self.daemon.media_url}?console_token={quote(json.loads(body)['token'])}"
        admitted = yield place_call(reactor, url, [line("Goodbye.")])
        self.assertTrue(admitted.hung_up_by_bot, admitted.errors)
        again = yield place_call(reactor, url, [line("Goodbye.")])
        self.assertFalse(again.connected, "a media token admits one call")
        rejected = (yield logged(self.daemon, "MEDIA_REJECTED", before + 3))[before:]
        self.assertEqual(len(rejected), 3, rejected)
        self.assertIn("console media token already used", rejected[-1])
        self.assertFalse(any(json.loads(body)["token"] in entry for entry in self.daemon.log().splitlines()),
                         "the media token is never logged")
