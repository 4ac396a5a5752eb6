"""Deepgram's wire as data: the listen URL, the server's messages, what a failure means."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from twisted.trial.unittest import TestCase

from voiced.audio import MULAW_8K
from voiced.stt.base import PCM_16K
from voiced.stt.deepgram_wire import (
    CLOSE_STREAM, FINALIZE, KEEPALIVE, Metadata, Other, Results, ServerError, SpeechStarted, UtteranceEnd, WireError,
    deepgram_language, handshake_status, is_fatal, listen_url, parse,
)

BASE = "wss://api.deepgram.com/v1/listen"


def query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


class ListenUrlTests(TestCase):
    def test_mulaw_8k_as_the_phone_network_sends_it(self):
        url = listen_url(BASE, MULAW_8K, model="nova-3", language="en-US", endpointing_ms=300, utterance_end_ms=1000)
        self.assertTrue(url.startswith(BASE + "?"))
        self.assertEqual(query(url), {
            "encoding": "mulaw", "sample_rate": "8000", "channels": "1", "model": "nova-3", "language": "en-US",
            "interim_results": "true", "punctuate": "true", "endpointing": "300", "utterance_end_ms": "1000",
        })

    def test_wideband_pcm_goes_as_linear16(self):
        url = listen_url(BASE, PCM_16K, model="nova-3", language="en-US", endpointing_ms=0, utterance_end_ms=0)
        q = query(url)
        self.assertEqual((q["encoding"], q["sample_rate"], q["endpointing"]), ("linear16", "16000", "false"))
        self.assertNotIn("utterance_end_ms", q)

    def test_a_base_with_a_query_keeps_it(self):
        url = listen_url(BASE + "?tag=x", MULAW_8K, model="m", language="en", endpointing_ms=10, utterance_end_ms=0)
        self.assertEqual(query(url)["tag"], "x")
        self.assertEqual(url.count("?"), 1)

    def test_not_a_websocket_url_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, "not a ws:// or wss:// URL"):
            listen_url("https://api.deepgram.com/v1/listen", MULAW_8K, model="m", language="en", endpointing_ms=0,
                       utterance_end_ms=0)

    def test_languages_as_deepgram_names_them(self):
        self.assertEqual(deepgram_language("he-IL"), "he")
        self.assertEqual(deepgram_language("iw-IL"), "he")  # the retired code carriers still send
        self.assertEqual(deepgram_language("en-US"), "en-US")
        self.assertEqual(deepgram_language("en-us"), "en-US")
        self.assertEqual(deepgram_language("pt-BR"), "pt-BR")
        self.assertEqual(deepgram_language("es-ES"), "es")  # no such regional model: the language
        self.assertEqual(deepgram_language("es-419"), "es-419")


class MessageTests(TestCase):
    def results(self, **fields) -> bytes:
        message = {"type": "Results", "channel_index": [0, 1], "start": 1.5, "duration": 0.75, "is_final": True,
                   "speech_final": True, "from_finalize": False,
                   "channel": {"alternatives": [{"transcript": "what time do you open", "confidence": 0.98,
                                                 "words": []}]},
                   "metadata": {"request_id": "r"}}
        message.update(fields)
        return json.dumps(message).encode()

    def test_results(self):
        r = parse(self.results())
        self.assertEqual(r, Results("what time do you open", True, True, False, 1.5, 0.75))
        self.assertEqual(r.end, 2.25)

    def test_interim_without_alternatives_is_empty(self):
        r = parse(self.results(is_final=False, speech_final=False, channel={"alternatives": []}))
        self.assertEqual((r.transcript, r.is_final), ("", False))

    def test_finalize_answer(self):
        self.assertTrue(parse(self.results(from_finalize=True)).from_finalize)

    def test_the_other_messages(self):
        self.assertEqual(parse('{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.4}'), UtteranceEnd(2.4))
        self.assertEqual(parse('{"type":"SpeechStarted","channel":[0],"timestamp":0.5}'), SpeechStarted(0.5))
        self.assertEqual(parse(json.dumps({"type": "Metadata", "transaction_key": "deprecated", "request_id": "abc",
                                           "duration": 3.0, "channels": 1})), Metadata("abc", 3.0))
        self.assertEqual(parse('{"type":"Error","description":"bad","message":"worse","variant":"v"}'),
                         ServerError("bad", "worse", "v"))
        self.assertEqual(parse('{"type":"SomethingNew"}'), Other("SomethingNew"))

    def test_garbage_is_a_wire_error_never_a_crash(self):
        for payload in (b"not json", b"[1]", b'{"no":"type"}', b'{"type":"Results"}',
                        b'{"type":"Results","channel":{"alternatives":"x"}}', b"\xff\xfe",
                        b'{"type":"UtteranceEnd","last_word_end":"soon"}'):
            with self.assertRaises(WireError, msg=payload):
                parse(payload)

    def test_control_frames_are_the_documented_json(self):
        self.assertEqual(json.loads(KEEPALIVE), {"type": "KeepAlive"})
        self.assertEqual(json.loads(FINALIZE), {"type": "Finalize"})
        self.assertEqual(json.loads(CLOSE_STREAM), {"type": "CloseStream"})


class FailureTests(TestCase):
    def test_handshake_status(self):
        self.assertEqual(handshake_status("HTTP/1.1 401 Unauthorized"), 401)
        self.assertEqual(handshake_status("HTTP/1.1 503"), 503)
        self.assertIsNone(handshake_status(None))
        self.assertIsNone(handshake_status("garbage"))

    def test_what_no_retry_cures(self):
        for status in (400, 401, 402, 403, 404):
            self.assertTrue(is_fatal(status, 1006), status)
        for status in (429, 500, 502, 503, None):
            self.assertFalse(is_fatal(status, 1006), status)
        self.assertTrue(is_fatal(None, 1008))  # DATA-0000: audio it cannot decode
        self.assertFalse(is_fatal(None, 1011))  # NET-0000/NET-0001: a new stream may work
