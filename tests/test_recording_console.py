"""The console serves a call's recording (behind its auth, Range requests, 404 when none)
and tells the page where it is; in memory, through the real site."""

from __future__ import annotations

import json
import os
import struct
import tempfile

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted.internet.testing import StringTransport

from tests.testing.console import TWILIO, fake_service, record
from voiced.call.record import TurnRecord
from voiced.recording.recordings import Recordings
from voiced.recording.wav import WavFile


def http(service, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    """A GET through the real site, in memory, pulling a file's producer as a socket would."""
    from voiced.carrier import twilio
    from voiced.web import build_site

    site = build_site(service, [twilio.carrier(service, service.settings, service.console)], service.console)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1:8080"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
    # static.File's pull producer is driven by the global cooperator on a real reactor; here
    # the test pulls it, as many times as it has pieces (private names: twisted's _PullToPush).
    for _ in range(1000):
        pusher = getattr(getattr(channel, "_channel", channel), "_requestProducer", None)
        if pusher is None:
            break
        pusher._producer.resumeProducing()
    head, _, payload = transport.value().partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    parsed = {line.partition(b": ")[0].lower(): line.partition(b": ")[2] for line in header_lines}
    channel.connectionLost(None)
    return int(status_line.split()[1]), parsed, payload


class RecordingRouteTests(SynchronousTestCase):
    def make(self, env: dict[str, str] | None = None):
        service = fake_service(env)
        directory = tempfile.mkdtemp()
        service.recordings = Recordings(directory, 30, Clock())  # never started: the route only reads
        call = record("CA-rec")
        call.recording = os.path.join(directory, "2026-01-01", "000000-CA-rec-abcdef.wav")
        os.makedirs(os.path.dirname(call.recording))
        wav = WavFile(call.recording)
        wav.append(struct.pack("<hh", 100, -100) * 8000)  # one second
        wav.close()
        call.turns.append(TurnRecord(1, "hello", reply_text="hi", caller_at_s=1.25, bot_at_s=2.5))
        service.call_hub.call_event(call, "start", {})
        service.call_hub.call_event(call, "end", {})
        return service, call

    def test_the_call_json_names_the_recording_and_the_lines_times(self) -> None:
        service, _ = self.make()
        body = json.loads(http(service, "/console/api/calls/CA-rec")[2])
        self.assertEqual(body["recording_url"], "/console/api/calls/CA-rec/recording")
        self.assertEqual((body["record"]["turns"][0]["caller_at_s"], body["record"]["turns"][0]["bot_at_s"]),
                         (1.25, 2.5))

    def test_the_recording_is_served_whole_or_by_range(self) -> None:
        service, call = self.make()
        with open(call.recording, "rb") as f:
            data = f.read()
        status, headers, body = http(service, "/console/api/calls/CA-rec/recording")
        self.assertEqual((status, body), (200, data))
        self.assertIn(b"wav", headers[b"content-type"])
        self.assertEqual(headers[b"accept-ranges"], b"bytes")
        self.assertEqual(headers[b"x-content-type-options"], b"nosniff")
        status, headers, body = http(service, "/console/api/calls/CA-rec/recording", headers={"Range": "bytes=44-47"})
        self.assertEqual((status, body), (206, data[44:48]))
        self.assertEqual(headers[b"content-range"], f"bytes 44-47/{len(data)}".encode())

    def test_404_without_a_recording(self) -> None:
        service, call = self.make()
        self.assertEqual(http(service, "/console/api/calls/CA-unknown/recording")[0], 404)
        plain = record("CA-plain")
        service.call_hub.call_event(plain, "start", {})
        self.assertEqual(http(service, "/console/api/calls/CA-plain/recording")[0], 404)
        self.assertIsNone(json.loads(http(service, "/console/api/calls/CA-plain")[2])["recording_url"])
        os.remove(call.recording)  # the retention sweep took it
        self.assertEqual(http(service, "/console/api/calls/CA-rec/recording")[0], 404)
        service.recordings = None  # a daemon that does not record serves none
        self.assertEqual(http(service, "/console/api/calls/CA-rec/recording")[0], 404)

    def test_a_path_outside_the_recordings_is_never_served(self) -> None:
        service, call = self.make()
        call.recording = os.path.abspath(__file__)
        self.assertEqual(http(service, "/console/api/calls/CA-rec/recording")[0], 404)

    def test_behind_the_console_token_like_every_route(self) -> None:
        service, _ = self.make({**TWILIO, "VOICED_CONSOLE_TOKEN": "letmein"})
        self.assertEqual(http(service, "/console/api/calls/CA-rec/recording")[0], 401)
        self.assertEqual(http(service, "/console/api/calls/CA-rec/recording",
                              headers={"Authorization": "Bearer nope"})[0], 403)
        self.assertEqual(http(service, "/console/api/calls/CA-rec/recording",
                              headers={"Authorization": "Bearer letmein"})[0], 200)
