"""Loopback fakes of the streaming TTS APIs, written from their public docs: real HTTP servers on
127.0.0.1 that check what a client sends (path, query, headers, JSON) and stream the audio in
chunks, as the vendors do, or fail as they do.

    fake = TTSFake("elevenlabs", api_key="k")   # or "cartesia", "openai"
    fake.listen(); self.addCleanup(fake.stop)
    fake.answer(Answer.status(429), Answer.speak())     # per request, in order; then fake.default
    fake.default = Answer.status(500)                   # an outage from now on
    exchange = await fake.exchange(0)                   # request 0, once it has come
    exchange.body, exchange.headers, exchange.problems
    with Answer.manual(): exchange.send(audio); exchange.finish() / exchange.abort()

- ElevenLabs: ``POST /v1/text-to-speech/{voice_id}/stream?output_format=ulaw_8000``, ``xi-api-key``,
  JSON ``text`` and ``model_id`` (``language_code`` optional); answers ``audio/basic``, mu-law 8 kHz.
- Cartesia: ``POST /tts/bytes``, ``X-API-Key``, ``Cartesia-Version`` (a date), JSON ``model_id``,
  ``transcript``, ``voice: {mode: id, id}``, ``output_format: {container: raw, encoding: pcm_mulaw,
  sample_rate: 8000}``; answers raw mu-law bytes.
- OpenAI ``POST /v1/audio/speech``: ``Authorization: Bearer``, JSON ``model``, ``voice``, ``input``,
  ``response_format`` pcm (24 kHz 16-bit little-endian mono, no header) or wav.

A request that breaks these rules is answered 400 (ElevenLabs and OpenAI answer 422/400 alike) and
listed in ``problems``, so a test can assert there were none. A wrong key is answered 401.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.fakes.arrivals import Arrivals
from tests.fakes.http_apps import LoopbackServer, RecordingApp
from voiced.audio import WAVE_FORMAT_PCM, pcm16_to_ulaw, wav_bytes

_ELEVEN_PATH = re.compile(r"^/v1/text-to-speech/(?P<voice>[^/]+)/stream$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def speech_pcm(text: str, rate: int) -> bytes:
    """Stand-in speech for ``text``: a tone of its own pitch (a test can tell whose audio it hears),
    60 ms per character (a real voice's pace)."""
    samples = rate * 60 * max(1, len(text)) // 1000
    pitch = 300 + zlib.crc32(text.encode()) % 400
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * pitch * n / rate))) for n in range(samples))


def speech_for(text: str, encoding: str) -> bytes:
    """What the fake streams for ``text``: 8 kHz mu-law, or 24 kHz PCM16 (OpenAI's ``pcm``, or in a WAV)."""
    if encoding == "pcm24k":
        return speech_pcm(text, 24000)
    if encoding == "wav24k":
        return wav_bytes(speech_pcm(text, 24000), 24000, WAVE_FORMAT_PCM, 16)
    return pcm16_to_ulaw(speech_pcm(text, 8000))


@dataclass
class Answer:
    """How the fake answers one request. ``speak``: the sentence in ``chunk_bytes`` pieces,
    ``delay_s`` apart; ``status``: an error status; ``stall``: headers, then nothing; ``manual``:
    the test drives the exchange; ``reset_after``: some audio, then the connection is dropped."""

    kind: str = "speak"
    status_code: int = 200
    chunk_bytes: int = 800
    delay_s: float = 0.0
    reset_after: int = 0

    @classmethod
    def speak(cls, chunk_bytes: int = 800, delay_s: float = 0.0) -> "Answer":
        return cls("speak", chunk_bytes=chunk_bytes, delay_s=delay_s)

    @classmethod
    def status(cls, code: int) -> "Answer":
        return cls("status", status_code=code)

    @classmethod
    def stall(cls) -> "Answer":
        return cls("stall")

    @classmethod
    def manual(cls) -> "Answer":
        return cls("manual")

    @classmethod
    def reset(cls, after_bytes: int) -> "Answer":
        return cls("reset", reset_after=after_bytes)


@dataclass
class Exchange:
    """One request and its answer under way."""

    request: Request
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: Any  # the JSON document (None if it was not JSON)
    problems: list[str]
    audio: bytes = b""  # what the fake would speak for it
    lost: Deferred[None] = field(default_factory=Deferred)  # the client closed before the end
    sent: int = 0
    finished: bool = False

    @property
    def text(self) -> str:
        body = self.body or {}
        return body.get("text") or body.get("transcript") or body.get("input") or ""

    def send(self, data: bytes) -> None:
        if not self.finished and not self.lost.called:
            self.request.write(data)
            self.sent += len(data)

    def finish(self) -> None:
        if not self.finished and not self.lost.called:
            self.finished = True
            self.request.finish()

    def abort(self) -> None:
        """The connection dropped mid-answer (what was written goes first: an abort would drop it)."""
        if not self.finished and not self.lost.called:
            self.finished = True
            self.request.channel.transport.loseConnection()


class TTSFake(Resource):
    isLeaf = True

    def __init__(self, vendor: str, api_key: str = "test-key", clock: Any = reactor) -> None:
        super().__init__()
        if vendor not in ("elevenlabs", "cartesia", "openai"):
            raise ValueError(vendor)
        self.vendor = vendor
        self.api_key = api_key
        self.clock = clock
        self.answers: list[Answer] = []
        self.default = Answer.speak()
        self.exchanges: Arrivals[Exchange] = Arrivals()
        self._delayed: list[IDelayedCall] = []
        self._server: LoopbackServer | None = None
        self.on_exchange: Callable[[Exchange], None] | None = None

    # -- test side ----------------------------------------------------------------------------
    def listen(self) -> str:
        app = RecordingApp()  # the loopback server's plumbing; this resource answers
        self._server = LoopbackServer(app)
        self._server.factory.wrappedFactory.resource = self
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        base = self._server.url("")
        return base + "/v1" if self.vendor == "openai" else base

    def stop(self) -> Deferred[Any]:
        for call in self._delayed:
            if call.active():
                call.cancel()
        return self._server.stop() if self._server is not None else succeed(None)

    def answer(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def exchange(self, index: int) -> Deferred[Exchange]:
        return self.exchanges.nth(index)

    @property
    def problems(self) -> list[str]:
        return [problem for exchange in self.exchanges for problem in exchange.problems]

    # -- server side --------------------------------------------------------------------------
    def render_POST(self, request: Request) -> bytes | int:
        url = urlsplit(request.uri.decode())
        headers = {name.decode().lower(): b", ".join(values).decode()
                   for name, values in request.requestHeaders.getAllRawHeaders()}
        raw = request.content.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        exchange = Exchange(request, url.path, parse_qs(url.query), headers, body, [])
        request.notifyFinish().addErrback(lambda _: exchange.lost.callback(None))
        self.exchanges.append(exchange)
        self.exchanges.notify()
        if not self._authorized(headers):
            return self._error(request, 401, "invalid api key")
        check = {"elevenlabs": self._check_elevenlabs, "cartesia": self._check_cartesia,
                 "openai": self._check_openai}[self.vendor]
        encoding = check(exchange)
        if exchange.problems:
            return self._error(request, 400, "; ".join(exchange.problems))
        exchange.audio = speech_for(exchange.text, encoding)
        answer = self.answers.pop(0) if self.answers else self.default
        if self.on_exchange is not None:
            self.on_exchange(exchange)  # a test that changes the fake's health mid-call
        if answer.kind == "status":
            return self._error(request, answer.status_code, f"fake {answer.status_code}")
        request.setHeader("Content-Type", "audio/pcm" if encoding == "pcm24k" else "audio/basic")
        if answer.kind == "manual":
            return NOT_DONE_YET
        if answer.kind == "stall":
            request.write(b"")  # the status and headers go out; no audio ever follows
            return NOT_DONE_YET
        if answer.kind == "reset":
            exchange.send(exchange.audio[: answer.reset_after])
            self._later(0, exchange.abort)
            return NOT_DONE_YET
        self._stream(exchange, answer, 0)
        return NOT_DONE_YET

    def _stream(self, exchange: Exchange, answer: Answer, at: int) -> None:
        if exchange.lost.called:
            return
        if at >= len(exchange.audio):
            exchange.finish()
            return
        exchange.send(exchange.audio[at : at + answer.chunk_bytes])
        self._later(answer.delay_s, self._stream, exchange, answer, at + answer.chunk_bytes)

    def _later(self, delay_s: float, fn: Callable[..., None], *args: Any) -> None:
        self._delayed.append(self.clock.callLater(delay_s, fn, *args))

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.vendor == "elevenlabs":
            return headers.get("xi-api-key") == self.api_key
        if self.vendor == "cartesia":
            return headers.get("x-api-key") == self.api_key
        return not self.api_key or headers.get("authorization") == f"Bearer {self.api_key}"

    @staticmethod
    def _error(request: Request, status: int, detail: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"detail": {"status": "error", "message": detail}}).encode()

    @staticmethod
    def _check_json(exchange: Exchange, required: dict[str, type]) -> dict[str, Any]:
        body = exchange.body
        if not isinstance(body, dict):
            exchange.problems.append("the body is not a JSON object")
            return {}
        if "json" not in exchange.headers.get("content-type", ""):
            exchange.problems.append("Content-Type is not application/json")
        for name, kind in required.items():
            if not isinstance(body.get(name), kind) or body.get(name) in ("", None):
                exchange.problems.append(f"{name} is missing or not a {kind.__name__}")
        return body

    def _check_elevenlabs(self, exchange: Exchange) -> str:
        if not _ELEVEN_PATH.match(exchange.path):
            exchange.problems.append(f"unknown path {exchange.path}")
        if exchange.query.get("output_format") != ["ulaw_8000"]:
            exchange.problems.append(f"output_format is {exchange.query.get('output_format')}, not ulaw_8000")
        body = self._check_json(exchange, {"text": str, "model_id": str})
        if "language_code" in body and not re.fullmatch(r"[a-z]{2,3}", str(body["language_code"])):
            exchange.problems.append(f"language_code {body['language_code']!r} is not ISO 639-1")
        return "mulaw"

    def _check_cartesia(self, exchange: Exchange) -> str:
        if exchange.path != "/tts/bytes":
            exchange.problems.append(f"unknown path {exchange.path}")
        if not _DATE.match(exchange.headers.get("cartesia-version", "")):
            exchange.problems.append("Cartesia-Version is missing or not a date")
        body = self._check_json(exchange, {"model_id": str, "transcript": str, "voice": dict, "output_format": dict})
        voice = body.get("voice") or {}
        if voice.get("mode") != "id" or not voice.get("id"):
            exchange.problems.append(f"voice is {voice!r}, not {{mode: id, id: ...}}")
        wanted = {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}
        if body.get("output_format") != wanted:
            exchange.problems.append(f"output_format is {body.get('output_format')!r}, not {wanted!r}")
        return "mulaw"

    def _check_openai(self, exchange: Exchange) -> str:
        if exchange.path != "/v1/audio/speech":
            exchange.problems.append(f"unknown path {exchange.path}")
        body = self._check_json(exchange, {"model": str, "voice": str, "input": str})
        if len(body.get("input") or "") > 4096:
            exchange.problems.append("input is over 4096 characters")
        if body.get("response_format") not in ("pcm", "wav"):
            exchange.problems.append(f"response_format {body.get('response_format')!r}: the fake speaks pcm or wav")
        return "pcm24k" if body.get("response_format") == "pcm" else "wav24k"
