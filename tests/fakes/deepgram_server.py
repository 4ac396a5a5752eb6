"""A loopback Deepgram live-transcription server, written from Deepgram's public API docs.

A real Autobahn WebSocket server on 127.0.0.1 that speaks ``/v1/listen`` as Deepgram does:
it refuses a handshake without ``Authorization: Token <key>`` (401) or without the raw
audio's ``encoding`` and ``sample_rate`` (400), takes binary audio, answers with
``Results`` (interim, then final at ``endpointing`` ms of silence or at ``Finalize``, with
``start``/``duration`` in the stream's audio seconds), ``UtteranceEnd`` after
``utterance_end_ms`` of silence, counts ``KeepAlive``s, and answers ``CloseStream`` with
its last final, ``Metadata`` and a 1000 close.

Its "recognizer" is a level meter: a 20 ms frame louder than SPEECH_RMS is speech. A
transcript is either the next line of ``script`` (one per utterance, whole in its first
final) or, without a script, ``frames N``: the speech frames the segment held, so a test
can tell that a replay lost no audio and repeated none. Faults for tests: ``refuse``
(the next handshakes get these HTTP statuses), ``fail_after`` (the next stream closes
with a code, or its TCP connection is reset, after so many audio bytes), ``mute`` (it
stops answering, as a hung server).
"""

from __future__ import annotations

import json
import uuid

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest

from tests.fakes.ws_server import JsonServerProtocol, LoopbackWebSocketFake
from voiced.audio import audioop

SPEECH_RMS = 300  # of 16-bit samples: far above mu-law silence (0xff), far below speech
FRAME_MS = 20
INTERIM_EVERY_FRAMES = 10
#: Deepgram's own error payloads for refused handshakes (err_code, err_msg).
_DENIALS = {
    400: "Bad Request", 401: "INVALID_AUTH", 402: "ASR_PAYMENT_REQUIRED", 403: "INSUFFICIENT_PERMISSIONS",
    429: "TOO_MANY_REQUESTS", 500: "INTERNAL_SERVER_ERROR", 503: "SERVICE_UNAVAILABLE",
}


class FakeDeepgramStream(JsonServerProtocol):
    """One /v1/listen connection."""

    def onConnect(self, request: ConnectionRequest):  # noqa: N802 - Autobahn's name
        fake: DeepgramFake = self.factory.fake
        fake.handshakes += 1
        fake.headers_seen.append(dict(request.headers))
        if request.path != "/v1/listen":
            raise ConnectionDeny(404, "not found")
        if request.headers.get("authorization") != f"Token {fake.api_key}":
            raise ConnectionDeny(401, _DENIALS[401])
        if fake.refusals:
            status = fake.refusals.pop(0)
            raise ConnectionDeny(status, _DENIALS.get(status, "refused"))
        query = {name: values[-1] for name, values in request.params.items()}
        if query.get("encoding") not in ("mulaw", "linear16") or "sample_rate" not in query:
            raise ConnectionDeny(400, "raw audio needs encoding and sample_rate")
        if query.get("channels", "1") != "1":
            raise ConnectionDeny(400, "one channel only here")
        self.query = query
        rate = int(query["sample_rate"])
        self.bytes_per_sample = 1 if query["encoding"] == "mulaw" else 2
        self.frame_bytes = rate * FRAME_MS // 1000 * self.bytes_per_sample
        endpointing = query.get("endpointing", "10")
        self.endpointing_frames = 0 if endpointing == "false" else max(1, int(endpointing) // FRAME_MS)
        self.utterance_end_frames = int(query.get("utterance_end_ms", "0")) // FRAME_MS
        self.interims = query.get("interim_results") == "true"
        self.request_id = str(uuid.uuid4())
        self.buffer = bytearray()
        self.bytes_received = 0
        self.frames = 0  # audio time, in frames
        self.segment_start = 0  # frame where the audio not yet finalized begins
        self.segment_speech = 0  # speech frames since then
        self.silence_run = 0
        self.in_utterance = False
        self.last_word_end = 0
        self.finals: list[dict] = []
        self.interim_texts: list[str] = []
        self.keepalives = 0
        self.finalizes = 0
        self.close_stream = False
        self.closed_code: int | None = None
        self.fail = fake.next_failure()
        return None

    def onOpen(self) -> None:  # noqa: N802
        self.factory.fake.streams.append(self)
        self.factory.fake.changed()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        self.closed_code = code
        if hasattr(self, "query"):
            self.factory.fake.changed()

    # -- what the client sends --------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        fake: DeepgramFake = self.factory.fake
        if isBinary:
            self.bytes_received += len(payload)
            self.buffer += payload
            while len(self.buffer) >= self.frame_bytes and self.state == self.STATE_OPEN:
                frame = bytes(self.buffer[: self.frame_bytes])
                del self.buffer[: self.frame_bytes]
                self.fake_hear(frame)
            if self.fail is not None and self.bytes_received >= self.fail[0] and self.state == self.STATE_OPEN:
                how = self.fail[1]
                if how == "reset":
                    self.transport.abortConnection()
                else:
                    self.fake_close(how, "NET-0000: the service has encountered an internal error")
        else:
            message = json.loads(payload)
            kind = message.get("type")
            if kind == "KeepAlive":
                self.keepalives += 1
            elif kind == "Finalize":
                self.finalizes += 1
                if not fake.muted:
                    self.fake_final(from_finalize=True, speech_final=False)
            elif kind == "CloseStream":
                self.close_stream = True
                if self.segment_speech:
                    self.fake_final(from_finalize=False, speech_final=True)
                self.send_json({"type": "Metadata", "transaction_key": "deprecated", "request_id": self.request_id,
                            "sha256": "0" * 64, "created": "2026-12-07T00:00:00.000Z",
                            "duration": self.frames * FRAME_MS / 1000, "channels": 1})
                self.sendClose(code=1000)
            else:
                self.fake_close(1008, "DATA-0000: unknown text message")
        fake.changed()

    def fake_hear(self, frame: bytes) -> None:
        pcm = audioop.ulaw2lin(frame, 2) if self.bytes_per_sample == 1 else frame
        speech = audioop.rms(pcm, 2) >= SPEECH_RMS
        self.frames += 1
        fake: DeepgramFake = self.factory.fake
        if speech:
            self.segment_speech += 1
            self.silence_run = 0
            self.in_utterance = True
            self.last_word_end = self.frames
            if self.interims and not fake.muted and self.segment_speech % INTERIM_EVERY_FRAMES == 0:
                self.fake_results(self.fake_text(final=False), is_final=False, speech_final=False, from_finalize=False)
            return
        self.silence_run += 1
        if self.segment_speech and self.endpointing_frames and self.silence_run >= self.endpointing_frames:
            if not fake.muted:
                self.fake_final(from_finalize=False, speech_final=True)
        if self.in_utterance and self.utterance_end_frames and self.silence_run >= self.utterance_end_frames:
            self.in_utterance = False
            fake.utterance_over()
            if not fake.muted:
                self.send_json({"type": "UtteranceEnd", "channel": [0, 1],
                            "last_word_end": self.last_word_end * FRAME_MS / 1000})

    # -- what it answers ------------------------------------------------------------------------

    def fake_close(self, code: int, reason: str) -> None:
        """Close as Deepgram does, with a protocol code (1008, 1011) Autobahn keeps from sendClose."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=reason.encode(), isReply=False)

    def fake_text(self, final: bool) -> str:
        return self.factory.fake.transcript(self.segment_speech, final)

    def fake_final(self, from_finalize: bool, speech_final: bool) -> None:
        if self.frames == self.segment_start:
            return  # no audio since the last final: nothing to finalize
        text = self.fake_text(final=True) if self.segment_speech else ""
        self.fake_results(text, is_final=True, speech_final=speech_final, from_finalize=from_finalize)
        self.segment_start, self.segment_speech = self.frames, 0

    def fake_results(self, text: str, *, is_final: bool, speech_final: bool, from_finalize: bool) -> None:
        start = self.segment_start * FRAME_MS / 1000
        message = {
            "type": "Results", "channel_index": [0, 1], "start": start,
            "duration": self.frames * FRAME_MS / 1000 - start, "is_final": is_final, "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.99, "words": []}]},
            "metadata": {"request_id": self.request_id, "model_uuid": "0", "model_info": {
                "name": self.query.get("model", ""), "version": "fake", "arch": "fake"}},
        }
        (self.finals if is_final else self.interim_texts).append(message if is_final else text)
        self.send_json(message)


class DeepgramFake(LoopbackWebSocketFake):
    """The server and what it saw; ``listen()`` starts it on a free loopback port."""

    protocol = FakeDeepgramStream
    path = "/v1/listen"

    def __init__(self, api_key: str = "test-deepgram-key", script: list[str] | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.script = list(script or [])
        self._line = 0  # the script line of the current utterance
        self._line_given = False  # its text went out in a final already
        self._failures: list[tuple[int, int | str]] = []
        self.muted = False
        self.handshakes = 0
        self.streams: list[FakeDeepgramStream] = []

    # -- faults ---------------------------------------------------------------------------------

    def fail_after(self, audio_bytes: int, how: int | str = 1011) -> None:
        """The next stream ends after ``audio_bytes`` of audio: a close ``how`` (1011 is
        Deepgram's NET-0000), or ``"reset"``: its TCP connection dropped without a close."""
        self._failures.append((audio_bytes, how))

    def next_failure(self) -> tuple[int, int | str] | None:
        return self._failures.pop(0) if self._failures else None

    # -- transcripts ----------------------------------------------------------------------------

    def transcript(self, speech_frames: int, final: bool) -> str:
        if not self.script:
            return f"frames {speech_frames}"
        line = self.script[self._line % len(self.script)]
        if final:
            if self._line_given:
                return ""
            self._line_given = True
            return line
        if self._line_given:
            return ""
        words = line.split()
        return " ".join(words[: max(1, speech_frames // INTERIM_EVERY_FRAMES)])

    def utterance_over(self) -> None:
        if self._line_given:
            self._line += 1
            self._line_given = False

    def connections(self) -> list[FakeDeepgramStream]:
        return self.streams

    @property
    def speech_frames_finalized(self) -> int:
        """Speech frames in every final with a ``frames N`` transcript, over all streams."""
        total = 0
        for stream in self.streams:
            for final in stream.finals:
                text = final["channel"]["alternatives"][0]["transcript"]
                if text.startswith("frames "):
                    total += int(text.split()[1])
        return total
