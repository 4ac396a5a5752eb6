"""A lean load generator: N real-time callers of any carrier voiced-call speaks, in one Twisted process.

``voiced-call`` is a faithful caller (Autobahn, a playback model exact to the sample)
and costs ~1 % of a core per call: too much to drive hundreds of calls from the
machine under test. This one does only what the daemon can observe:
  - the carrier's own messages, written and read by its voiced-call wire
    (``voiced.caller.carriers``, Twilio by default: its media message costs ~0.6 µs);
  - for a WebSocket carrier, a raw TCP WebSocket client: one HTTP upgrade, then
    hand-built frames with a zero mask key (legal, and masking becomes a no-op); a TCP
    carrier writes its wire's bytes as they are;
  - one 20 ms LoopingCall for every call: each call sends the frames its own absolute
    schedule owes, so a late tick catches up instead of drifting;
  - playback in real time per call: markers are answered when the audio queued before
    them has played, all at once on a clear (as the carrier does); server pings are answered.
Each call waits for the greeting to play, then for each turn says its line, waits for
the reply to start (the measured turn) and to finish playing, and pauses.

A turn's overhead is (first reply audio received) - (the send time of the frame that
completes the emulator's injected final delay after the line's last loud frame): the
caller's speech end minus the injected latency, without this process's own tick
lateness. The last loud frame is found with the scripted emulator's own rule
(``voiced.emulator.scripted.is_loud``). The line's silence after its speech must be
longer than the final delay.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass, field

import benchlib  # noqa: F401  (puts the repo on sys.path)
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import LoopingCall

from voiced.audio import FRAME_BYTES, SAMPLE_RATE, ulaw_to_pcm16
from voiced.caller.carriers import DEFAULT_CARRIER, carrier_wire
from voiced.caller.carriers.base import Audio, CallSetup, Clear, HangUp, Marker, Outbound, Problem, SendBack
from voiced.emulator.scripted import is_loud

FRAME_S = 0.02
REPLY_TIMEOUT_S = 5.0  # no reply audio this long after speech end: the turn is unanswered
PAUSE_S = 0.4  # after the bot's reply has played, before the caller speaks again


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame with a zero key: the payload goes as it is."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + b"\0\0\0\0" + payload


class Script:
    """What every caller says, cut into 20 ms frames once: the line, then the silence it loops in."""

    def __init__(self, line_ulaw: bytes, silence_ulaw: bytes) -> None:
        def cut(frames_audio: bytes) -> list[bytes]:
            return [frames_audio[i : i + FRAME_BYTES] for i in range(0, len(frames_audio) - FRAME_BYTES + 1, FRAME_BYTES)]

        self.line = cut(line_ulaw)
        self.silence = cut(silence_ulaw)
        loud = [i for i in range(len(self.line)) if is_loud(ulaw_to_pcm16(line_ulaw[i * FRAME_BYTES:(i + 1) * FRAME_BYTES]))]
        self.last_loud = loud[-1]  # the frame whose arrival is the speech end


@dataclass
class TurnResult:
    call: int
    turn: int
    speech_end: float  # the line's last loud frame went out
    #: The frame that completes the injected final delay went out: the service's final
    #: is due now, so reply - this is the overhead, free of this process's tick jitter.
    final_due: float | None = None
    first_reply: float | None = None


@dataclass
class CallStats:
    turns: list[TurnResult] = field(default_factory=list)
    refused: bool = False  # the upgrade was answered with something else than 101
    failed: bool = False  # the connection broke before the call finished its turns
    finished: bool = False
    problems: int = 0  # daemon messages that broke the carrier's protocol


class Caller(Protocol):
    def __init__(self, gen: "LoadGenerator", index: int) -> None:
        self.gen = gen
        self.index = index
        self.stats = CallStats()
        self.open = False
        self.wire = gen.carrier.new_call(CallSetup())
        self._speech = self.wire.speech
        self._websocket = gen.carrier.transport == "websocket"
        self._buf = b""
        self._t0 = 0.0
        self._sent_frames = 0
        self._line_at: int | None = None  # frame number the current line started at
        self._turn = 0
        self._play_end = 0.0
        self._marks: deque[tuple[float, str]] = deque()
        self._bot_quiet_since: float | None = None
        self._waiting_reply: TurnResult | None = None

    # ---- connection --------------------------------------------------------------------
    def connectionMade(self) -> None:
        if not self._websocket:
            self._start()
            return
        host, port, path = self.gen.host, self.gen.port, self.gen.carrier.path
        headers = "".join(f"{k}: {v}\r\n" for k, v in self.wire.upgrade_headers(f"ws://{host}:{port}{path}").items())
        self.transport.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n".encode()
        )

    def connectionLost(self, reason: object) -> None:
        if not self.stats.finished:
            self.stats.failed = True
        self.open = False
        self.gen.ended(self)

    def dataReceived(self, data: bytes) -> None:
        if not self._websocket:
            self._message(data, True)  # the wire keeps a partial frame
            return
        self._buf += data
        if not self.open:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status, self._buf = self._buf[:end], self._buf[end + 4 :]
            if not status.startswith(b"HTTP/1.1 101"):
                self.stats.refused = True
                self.stats.finished = True
                self.transport.loseConnection()
                return
            self._start()
        self._frames()

    def _start(self) -> None:
        self.open = True
        self._t0 = time.monotonic()
        self._play_end = self._t0
        self._send_all(self.wire.opening())

    def _send(self, message: Outbound) -> None:
        if not self._websocket:
            self._write(message)  # type: ignore[arg-type]  # a TCP wire writes bytes
        elif type(message) is str:
            self._write(ws_frame(message.encode()))
        else:
            self._write(ws_frame(message, 0x2))  # type: ignore[arg-type]

    def _send_all(self, messages: list[Outbound]) -> None:
        for message in messages:
            self._send(message)

    # ---- inbound frames ------------------------------------------------------------------
    def _frames(self) -> None:
        buf = self._buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n, at = b1 & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, at = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, at = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < at + n:
                break
            payload, buf = buf[at : at + n], buf[at + n :]
            opcode = b0 & 0x0F
            if opcode in (0x1, 0x2):
                self._message(payload, opcode == 0x2)
            elif opcode == 0x9:
                self.transport.write(ws_frame(payload, 0xA))  # pong
            elif opcode == 0x8:
                self.stats.finished = self.stats.finished or self._turn >= self.gen.turns
                self.transport.write(ws_frame(payload[:2], 0x8))
                self.transport.loseConnection()
        self._buf = buf

    def _message(self, payload: bytes, is_binary: bool) -> None:
        now = time.monotonic()
        carrier = self.gen.carrier
        for event in self.wire.read(payload, is_binary):
            if isinstance(event, Audio):
                self._play_end = max(self._play_end, now) + len(event.ulaw) / SAMPLE_RATE
                self._bot_quiet_since = None
                turn = self._waiting_reply
                if turn is not None and now >= turn.speech_end:
                    turn.first_reply = now
                    self._waiting_reply = None
            elif isinstance(event, Marker):
                if carrier.answers_markers:
                    self._marks.append((self._play_end, event.name))
            elif isinstance(event, Clear):
                self._play_end = now
                keep = carrier.clear_answers_markers
                self._marks = deque((now, name) for _, name in self._marks) if keep else deque()
            elif isinstance(event, SendBack):
                self._send(event.message)
            elif isinstance(event, HangUp):
                self.stats.finished = self.stats.finished or self._turn >= self.gen.turns
                self.transport.loseConnection()
            elif isinstance(event, Problem):
                self.stats.problems += 1

    # ---- the 20 ms tick ------------------------------------------------------------------
    def tick(self, now: float) -> None:
        while self._marks and self._marks[0][0] <= now:
            self._echo(self._marks.popleft()[1])
        due = int((now - self._t0) / FRAME_S) + 1
        while self._sent_frames < due:
            self._send_frame(now)
        if self._line_at is None and self._waiting_reply is None:
            self._maybe_speak(now)

    def _maybe_speak(self, now: float) -> None:
        if self._marks or now < self._play_end:
            self._bot_quiet_since = None
            return
        if self._bot_quiet_since is None:
            self._bot_quiet_since = now
            return
        if now - self._bot_quiet_since < PAUSE_S:
            return
        if self._turn >= self.gen.turns:
            self.stats.finished = True
            self._send_all(self.wire.hang_up())
            self.transport.loseConnection()
            return
        self._line_at = self._sent_frames

    def _send_frame(self, now: float) -> None:
        script = self.gen.script
        k = self._sent_frames
        if self._line_at is not None:
            i = k - self._line_at
            frame = script.line[i]
            if i == script.last_loud:
                turn = TurnResult(self.index, self._turn, now)
                self.stats.turns.append(turn)
                self._waiting_reply = turn
                reactor.callLater(REPLY_TIMEOUT_S, self._reply_timeout, turn)
            elif i == script.last_loud + self.gen.final_frames and self.stats.turns:
                self.stats.turns[-1].final_due = now
            if i == len(script.line) - 1:
                self._line_at = None
                self._turn += 1
        else:
            frame = script.silence[k % len(script.silence)]
        self._sent_frames = k + 1
        message = self._speech(frame, k * 20)
        if message is not None:
            self._send(message)

    def _write(self, data: bytes) -> None:
        """Straight to the socket while nothing is buffered: Twisted's write() arms and
        disarms the fd in epoll for every frame (two syscalls), a third of this process's cost."""
        transport = self.transport
        if not transport.dataBuffer and not transport._tempDataBuffer:
            try:
                sent = transport.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                return  # the connection is gone: connectionLost reports it
            data = data[sent:]
        if data:
            transport.write(data)

    def _reply_timeout(self, turn: TurnResult) -> None:
        if self._waiting_reply is turn:
            self._waiting_reply = None  # unanswered: the caller moves on

    def _echo(self, name: str) -> None:
        self._send_all(self.wire.marker_played(name))


class LoadGenerator:
    """Starts ``n`` callers spread over ``ramp_s``; ``done`` fires when every one has ended."""

    def __init__(self, host: str, port: int, script: Script, n: int, turns: int, ramp_s: float,
                 final_delay_ms: int, carrier: str = DEFAULT_CARRIER) -> None:
        self.host, self.port, self.script = host, port, script
        self.carrier = carrier_wire(carrier)
        self.final_frames = -(-final_delay_ms // 20)
        self.n, self.turns, self.ramp_s = n, turns, ramp_s
        self.callers: list[Caller] = []
        self.live: set[Caller] = set()
        self.done: Deferred[list[CallStats]] = Deferred()
        self.all_connected_at: float | None = None
        self.first_ended_at: float | None = None
        self._loop = LoopingCall(self._tick)
        self._ended = 0

    def start(self) -> Deferred[list[CallStats]]:
        self._loop.start(FRAME_S, now=False)
        for i in range(self.n):
            reactor.callLater(self.ramp_s * i / max(1, self.n), self._connect, i)
        return self.done

    def _connect(self, i: int) -> None:
        factory = ClientFactory()
        caller = Caller(self, i)
        factory.buildProtocol = lambda addr: caller  # type: ignore[method-assign]
        factory.clientConnectionFailed = lambda connector, reason: self.ended(caller, failed=True)  # type: ignore
        self.callers.append(caller)
        reactor.connectTCP(self.host, self.port, factory)

    def _tick(self) -> None:
        now = time.monotonic()
        opened = 0
        for caller in self.callers:
            if caller.open:
                opened += 1
                caller.tick(now)
        if self.all_connected_at is None and opened == self.n:
            self.all_connected_at = now

    def ended(self, caller: Caller, failed: bool = False) -> None:
        if failed:
            caller.stats.failed = True
        if self.first_ended_at is None:
            self.first_ended_at = time.monotonic()
        self._ended += 1
        if self._ended == self.n:
            self._loop.stop()
            self.done.callback([c.stats for c in self.callers])
