"""A loopback OpenAI Realtime server, written from the Realtime API reference.

A real Autobahn WebSocket server on 127.0.0.1 that speaks ``/v1/realtime?model=...``: it
refuses a handshake without ``Authorization: Bearer <key>`` (401), sends ``session.created``,
checks ``session.update`` (g711_ulaw both ways, or an ``invalid_request_error``), takes
``input_audio_buffer.append`` and on ``input_audio_buffer.commit`` (or, with ``server_vad``,
its own VAD: a 20 ms frame louder than SPEECH_RMS is speech, ``silence_duration_ms`` of
quiet ends it) answers ``input_audio_buffer.committed`` and the caller's transcript
(``conversation.item.input_audio_transcription.completed``: the next line of ``heard``, or
``speech N ms``). ``response.create`` streams ``response.created``, ``response.audio.delta``
chunks (a tone, ``delta_ms`` of audio each, paced at ``speed`` times real time),
``response.audio_transcript.delta`` words beside them, ``.done`` and ``response.done``; a
line of ``replies`` that is a dict ``{"tool": name, "arguments": {...}}`` is a function call
instead (``response.function_call_arguments.done``), and the reply after its
``function_call_output`` says ``Tool said <output>``. ``response.cancel`` stops the stream
(``response.done`` cancelled, or an error when nothing streams); ``conversation.item.truncate``
is recorded with what had been sent of the item. Faults: ``refuse`` (handshake statuses),
``fail_next`` (the next response sends ``error`` server_error, or the socket closes with 1011).
"""

from __future__ import annotations

import base64
import itertools
import json
import math
from typing import Any, Callable

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import reactor

from tests.fakes.ws_server import JsonServerProtocol, LoopbackWebSocketFake
from voiced.audio import audioop, pcm16_to_ulaw

SPEECH_RMS = 300
FRAME_BYTES = 160  # 20 ms of g711_ulaw
_ids = itertools.count(1)


def tone(ms: int) -> bytes:
    """``ms`` of a 440 Hz tone in mu-law: audio a caller can tell from silence."""
    samples = [int(6000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(8 * ms)]
    return pcm16_to_ulaw(b"".join(s.to_bytes(2, "little", signed=True) for s in samples))


class FakeRealtimeSession(JsonServerProtocol):
    def onConnect(self, request: ConnectionRequest):  # noqa: N802 - Autobahn's name
        fake: RealtimeFake = self.factory.fake
        fake.headers_seen.append(dict(request.headers))
        if request.path != "/v1/realtime":
            raise ConnectionDeny(404, "not found")
        if request.headers.get("authorization") != f"Bearer {fake.api_key}":
            raise ConnectionDeny(401, "Incorrect API key provided")
        if fake.refusals:
            raise ConnectionDeny(fake.refusals.pop(0), "refused")
        self.model = request.params.get("model", [""])[-1]
        self.beta_header = request.headers.get("openai-beta")
        self.session: dict[str, Any] = {}
        self.buffer = bytearray()
        self.appended = 0
        self.items: list[dict] = []  # conversation.item.create's items
        self.truncates: list[dict] = []
        self.asked: list[dict] = []  # response.create's response objects (their instructions)
        self.cancels = 0
        self.response: dict | None = None  # the one streaming
        self.audio_sent: dict[str, int] = {}  # bytes sent per assistant item
        self.speech_frames = self.silence_frames = 0
        self.in_speech = False
        self.closed_code = None
        self.ga = False  # the GA interface's event names (session.type "realtime")

    def onOpen(self) -> None:  # noqa: N802
        self.factory.fake.sessions.append(self)
        self.send({"type": "session.created", "session": {"id": f"sess_{next(_ids)}", "model": self.model}})
        self.factory.fake.changed()

    def onClose(self, wasClean, code, reason) -> None:  # noqa: N802
        self.closed_code = code
        response = getattr(self, "response", None)  # None: a refused handshake
        if response is not None and response.get("timer") is not None and response["timer"].active():
            response["timer"].cancel()
        self.factory.fake.changed()

    def send(self, event: dict) -> None:
        if self.state == self.STATE_OPEN:
            event.setdefault("event_id", f"event_{next(_ids)}")
            self.send_json(event)

    def error(self, message: str, code: str = "", kind: str = "invalid_request_error") -> None:
        self.send({"type": "error", "error": {"type": kind, "code": code, "message": message}})

    # ---- the client's events ---------------------------------------------------------------------
    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        fake: RealtimeFake = self.factory.fake
        event = json.loads(payload)
        kind = event.get("type")
        fake.received.append(kind)
        if kind == "session.update":
            session = event.get("session", {})
            self.ga = session.get("type") == "realtime"
            if self.ga:  # GA's shape: the audio's settings under audio.input / audio.output
                audio = session.get("audio", {})
                formats = (audio.get("input", {}).get("format"), audio.get("output", {}).get("format"))
                ulaw = formats == ({"type": "audio/pcmu"}, {"type": "audio/pcmu"})
                session = {**session, "turn_detection": audio.get("input", {}).get("turn_detection"),
                           "voice": audio.get("output", {}).get("voice")}
            else:
                ulaw = session.get("input_audio_format") == session.get("output_audio_format") == "g711_ulaw"
            if not ulaw or (self.beta_header == "realtime=v1") is self.ga:
                self.error("this fake speaks g711_ulaw only, beta with its header or GA without",
                           "invalid_value")
            else:
                self.session.update(session)
                self.send({"type": "session.updated", "session": self.session})
        elif kind == "input_audio_buffer.append":
            audio = base64.b64decode(event["audio"])
            self.appended += len(audio)
            self.buffer += audio
            if (self.session.get("turn_detection") or {}).get("type") == "server_vad":
                self.vad(audio)
        elif kind == "input_audio_buffer.commit":
            if not self.buffer:
                self.error("buffer too small", "input_audio_buffer_commit_empty")
            else:
                self.commit()
        elif kind == "conversation.item.create":
            self.items.append(event["item"])
        elif kind == "response.create":
            self.asked.append(event.get("response", {}))
            self.respond(event.get("response", {}))
        elif kind == "response.cancel":
            self.cancels += 1
            if self.response is None:
                self.error("Cancellation failed: no active response found", "response_cancel_not_active")
            else:
                self.finish("cancelled")
        elif kind == "conversation.item.truncate":
            sent = self.audio_sent.get(event.get("item_id"), -1)
            self.truncates.append({**event, "audio_sent_ms": sent // 8})
            if sent < 0 or event.get("audio_end_ms", 0) > sent // 8:
                self.error("audio_end_ms is past the item's audio", "invalid_value")
            else:
                self.send({"type": "conversation.item.truncated", "item_id": event["item_id"], "content_index": 0,
                           "audio_end_ms": event["audio_end_ms"]})
        fake.changed()

    def vad(self, audio: bytes) -> None:
        silence_frames = (self.session["turn_detection"].get("silence_duration_ms") or 500) // 20
        for i in range(0, len(audio) - FRAME_BYTES + 1, FRAME_BYTES):
            loud = audioop.rms(audioop.ulaw2lin(audio[i : i + FRAME_BYTES], 2), 2) > SPEECH_RMS
            if loud:
                self.speech_frames += 1
                self.silence_frames = 0
                if not self.in_speech and self.speech_frames >= 3:
                    self.in_speech = True
                    self.speech_item = f"item_caller_{next(_ids)}"
                    self.send({"type": "input_audio_buffer.speech_started", "item_id": self.speech_item,
                               "audio_start_ms": self.appended // 8})
                    if self.response is not None:  # interrupt_response
                        self.finish("cancelled")
            elif self.in_speech:
                self.silence_frames += 1
                if self.silence_frames >= silence_frames:
                    self.in_speech = False
                    self.speech_frames = 0
                    self.send({"type": "input_audio_buffer.speech_stopped", "item_id": self.speech_item,
                               "audio_end_ms": self.appended // 8})
                    self.commit()
                    self.respond({})
            else:
                self.speech_frames = 0

    def commit(self) -> None:
        fake: RealtimeFake = self.factory.fake
        item_id = f"item_caller_{next(_ids)}"
        speech_ms = len(self.buffer) // 8
        self.buffer.clear()
        self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None})
        fake.commits += 1
        text = fake.heard.pop(0) if fake.heard else f"speech {speech_ms} ms"
        self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                   "content_index": 0, "transcript": text})

    # ---- responses -----------------------------------------------------------------------------
    def respond(self, options: dict) -> None:
        fake: RealtimeFake = self.factory.fake
        if self.response is not None:
            self.error("Conversation already has an active response", "conversation_already_has_active_response")
            return
        response_id = f"resp_{next(_ids)}"
        item_id = f"item_bot_{next(_ids)}"
        self.response = response = {"id": response_id, "item": item_id, "timer": None}
        fake.responses.append({"id": response_id, "item": item_id, "first_delta_at": None, "ended_at": None,
                               "status": None})
        self.send({"type": "response.created", "response": {"id": response_id, "status": "in_progress"}})
        failure = fake.failures.pop(0) if fake.failures else None
        if failure == "error":
            self.error("The server had an error while processing your request", "server_error", "server_error")
            self.response = None
            return
        if failure == 1011:
            # 1011 as the server sends it (Autobahn keeps protocol codes from sendClose).
            self.sendCloseFrame(code=1011, reasonUtf8=b"keepalive ping timeout", isReply=False)
            return
        outputs = [i for i in self.items if i.get("type") == "function_call_output"]
        if outputs and len(outputs) > fake.tool_outputs_answered:
            fake.tool_outputs_answered = len(outputs)
            line: Any = f"Tool said {outputs[-1]['output']}"
        elif options.get("instructions", "").startswith("Greet"):
            line = fake.greeting
        else:
            line = fake.replies.pop(0) if fake.replies else "I have nothing more to say."
        if isinstance(line, dict):
            call_id = f"call_{next(_ids)}"
            self.send({"type": "response.function_call_arguments.done", "response_id": response_id,
                       "item_id": item_id, "output_index": 0, "call_id": call_id, "name": line["tool"],
                       "arguments": json.dumps(line.get("arguments", {}))})
            self.finish("completed")
            return
        audio = tone(fake.reply_ms(line))
        response["chunks"] = [audio[i : i + fake.delta_ms * 8] for i in range(0, len(audio), fake.delta_ms * 8)]
        words = line.split()
        per_chunk = max(1, math.ceil(len(words) / len(response["chunks"])))
        response["words"] = [" ".join(words[i : i + per_chunk]) for i in range(0, len(words), per_chunk)]
        response["text"] = line
        self.audio_sent[item_id] = 0
        self.stream()

    def stream(self, released: bool = False) -> None:
        fake: RealtimeFake = self.factory.fake
        response = self.response
        if response is None or self.state != self.STATE_OPEN:
            return
        response["timer"] = None
        if fake.hold and response["chunks"] and not released:
            fake.held.append(lambda: self.stream(released=True))  # the test releases it
            fake.changed()
            return
        if response["chunks"]:
            chunk = response["chunks"].pop(0)
            if response["words"]:
                first = self.audio_sent[response["item"]] == 0
                words = response["words"].pop(0)
                self.send({"type": "response.output_audio_transcript.delta" if self.ga else
                           "response.audio_transcript.delta", "response_id": response["id"],
                           "item_id": response["item"], "output_index": 0, "content_index": 0,
                           "delta": words if first else f" {words}"})
            self.send({"type": "response.output_audio.delta" if self.ga else "response.audio.delta", "response_id": response["id"], "item_id": response["item"],
                       "output_index": 0, "content_index": 0, "delta": base64.b64encode(chunk).decode()})
            self.audio_sent[response["item"]] += len(chunk)
            log = fake.response_log(response["id"])
            log["first_delta_at"] = log["first_delta_at"] or reactor.seconds()
            fake.deltas_sent += 1
            fake.changed()
            response["timer"] = reactor.callLater(fake.delta_ms / 1000 / fake.speed, self.stream)
            return
        self.send({"type": "response.output_audio_transcript.done" if self.ga else
                   "response.audio_transcript.done", "response_id": response["id"],
                   "item_id": response["item"], "output_index": 0, "content_index": 0, "transcript": response["text"]})
        self.finish("completed")

    def finish(self, status: str) -> None:
        response, self.response = self.response, None
        if response is None:
            return
        if response.get("timer") is not None and response["timer"].active():
            response["timer"].cancel()
        log = self.factory.fake.response_log(response["id"])
        log["ended_at"], log["status"] = reactor.seconds(), status
        self.send({"type": "response.done", "response": {"id": response["id"], "status": status,
                                                         "status_details": {"reason": "client_cancelled"}
                                                         if status == "cancelled" else None}})
        self.factory.fake.changed()


class RealtimeFake(LoopbackWebSocketFake):
    """The server and what it saw; ``listen()`` starts it on a free loopback port."""

    protocol = FakeRealtimeSession
    path = "/v1/realtime"

    def __init__(self, api_key: str = "test-openai-key", replies: list[Any] | None = None,
                 greeting: str = "Hello, how can I help?", heard: list[str] | None = None,
                 ms_per_word: int = 300, delta_ms: int = 100, speed: float = 2.0) -> None:
        super().__init__()
        self.api_key = api_key
        self.replies = list(replies or [])
        self.greeting = greeting
        self.heard = list(heard or [])
        self.ms_per_word = ms_per_word
        self.delta_ms = delta_ms
        self.speed = speed
        self.hold = False  # True: each audio delta waits for release()
        self.held: list[Callable[[], None]] = []
        self.failures: list[Any] = []
        self.received: list[str] = []
        self.sessions: list[FakeRealtimeSession] = []
        self.commits = 0
        self.deltas_sent = 0
        self.tool_outputs_answered = 0
        self.responses: list[dict] = []  # per response: when its audio began and when it ended, how

    def reply_ms(self, line: str) -> int:
        return max(self.delta_ms, len(line.split()) * self.ms_per_word)

    def connections(self) -> list[FakeRealtimeSession]:
        return self.sessions

    def fail_next(self, how: Any) -> None:
        """The next response fails: ``"error"`` (a server_error event) or ``1011`` (a close)."""
        self.failures.append(how)

    def release(self, deltas: int = 1) -> None:
        """With ``hold``: let ``deltas`` more audio deltas go."""
        for _ in range(deltas):
            if self.held:
                self.held.pop(0)()

    def response_log(self, response_id: str) -> dict:
        return next(r for r in self.responses if r["id"] == response_id)

    @property
    def truncates(self) -> list[dict]:
        return [t for s in self.sessions for t in s.truncates]
