"""The person on the phone: ``CallSession`` paces caller frames on an absolute 20 ms
schedule, speaks its ``CallerLine``s turn by turn (or barges in, or presses keys),
segments the bot's replies by audio timing, measures latencies, decides when to hang
up, and fills in the ``CallReport``. It is pure and driven by an ``IReactorTime``; it
talks to the daemon only through a ``Link`` and only in carrier-neutral terms: its
``CarrierWire`` (``voiced.caller.carriers``) writes and reads the carrier's messages,
so tests run whole calls of any carrier on a ``Clock``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from voiced.audio import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, ULAW_SILENCE, frames, ulaw_to_pcm16
from voiced.caller.carriers.base import Audio, CarrierWire, Clear, HangUp, Marker, Outbound, Problem, SendBack
from voiced.caller.playback import EPSILON_S, Playback
from voiced.caller.report import BotReply, CallReport, MarkEcho, TurnObservation

FRAME_S = FRAME_MS / 1000
SILENT_FRAME = ULAW_SILENCE * FRAME_BYTES
# A frame is speech when its RMS exceeds about -44 dBFS: well above mu-law's idle
# noise, well below any spoken syllable.
VOICE_RMS = 200.0
DTMF_KEYS = frozenset("0123456789*#ABCD")  # a phone's keypad, A-D included


@dataclass
class CallerLine:
    audio: bytes  # 8 kHz mu-law
    text: str = ""
    barge_in_ms: int | None = None  # start this line N ms after the bot's reply starts playing
    dtmf: str = ""  # keys pressed as the line starts, one per 20 ms frame (the line lasts at least that long)

    def __post_init__(self) -> None:
        if not set(self.dtmf) <= DTMF_KEYS:
            raise ValueError(f"DTMF keys are 0-9, *, # and A-D, not {self.dtmf!r}")


class Link(Protocol):
    """What a CallSession needs from its connection (a WebSocket, or a TCP stream)."""

    def send(self, message: Outbound) -> None: ...

    def hang_up(self) -> None: ...


@dataclass
class CallConfig:
    pause_s: float = 0.4
    reply_timeout_s: float = 8.0
    hangup_grace_s: float = 3.0
    max_duration_s: float = 120.0
    reply_gap_s: float = 0.6  # longer without new bot audio (queued or received) ends a reply


def speech_frames(ulaw_frames: list[bytes]) -> list[int]:
    """Indexes of the frames that carry speech (energy above VOICE_RMS)."""
    if not ulaw_frames:
        return []
    pcm = np.frombuffer(ulaw_to_pcm16(b"".join(ulaw_frames)), dtype=np.int16).astype(np.float64)
    rms = np.sqrt((pcm.reshape(len(ulaw_frames), -1) ** 2).mean(axis=1))
    return [int(i) for i in np.flatnonzero(rms > VOICE_RMS)]


@dataclass
class _Line:
    frames: list[bytes]
    first_voiced: int
    last_voiced: int
    dtmf: str = ""
    position: int = 0


@dataclass
class _OpenReply:
    start_s: float
    first_audio_s: float
    play_start: int  # sample
    turn_index: int | None = None


@dataclass
class CallSession:
    """One simulated caller. Call ``opened`` when the connection opens, ``received`` per
    message (or, on TCP, per chunk of the stream), ``closed`` when it closes; ``done``
    fires with the CallReport."""

    clock: IReactorTime
    lines: list[CallerLine]
    wire: CarrierWire
    url: str = ""
    config: CallConfig = field(default_factory=CallConfig)

    def __post_init__(self) -> None:
        self.done: Deferred[CallReport] = Deferred()
        wire = self.wire
        self.report = CallReport(call_sid=wire.call_id, stream_sid=wire.stream_id, url=self.url, carrier=wire.name)
        self._speech = wire.speech  # bound once: fifty calls a second
        self._link: Link | None = None
        self._t0 = 0.0
        self._playback: Playback | None = None
        self._frame_no = 0
        self._caller_audio = bytearray()
        self._pace_timer: IDelayedCall | None = None
        self._turn_timer: IDelayedCall | None = None
        self._limit_timer: IDelayedCall | None = None
        self._state = "idle"  # idle -> listening <-> speaking, listening -> ended
        self._next_line = 0
        self._speaking: _Line | None = None
        self._listen_start_s = 0.0
        self._reply_seen = False
        self._listen_play_start_s: float | None = None
        self._last_rx_s = -1.0
        self._reply: _OpenReply | None = None
        self._pending_start_s: float | None = None
        self._mark_received: dict[str, deque[float]] = {}
        self._hung_up_by_us = False

    # -- clock ----------------------------------------------------------------
    def now(self) -> float:
        return self.clock.seconds() - self._t0

    # -- connection events -----------------------------------------------------
    def opened(self, link: Link) -> None:
        self._link = link
        self._t0 = self.clock.seconds()
        self.report.opened_at = self._t0
        self.report.connected = True
        wire = self.wire
        on_marker = self._marker_played if wire.answers_markers else None
        self._playback = Playback(self.clock, self._t0, on_marker, wire.clear_answers_markers)
        self._send_all(wire.opening())
        self._limit_timer = self.clock.callLater(self.config.max_duration_s, self._too_long)
        self._listen()
        self._send_frame()

    def received(self, payload: bytes, is_binary: bool) -> None:
        if self._state in ("idle", "ended"):
            return
        for event in self.wire.read(payload, is_binary):
            if self._state == "ended":
                return  # a hang-up earlier in the same chunk
            if isinstance(event, Audio):
                self._bot_media(event.ulaw)
            elif isinstance(event, Marker):
                self._bot_marker(event.name)
            elif isinstance(event, Clear):
                self._bot_clear()
            elif isinstance(event, SendBack):
                self._link.send(event.message)
            elif isinstance(event, Problem):
                self._error(event.message)
            elif isinstance(event, HangUp):
                self._bot_hung_up()

    def closed(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        if self._state == "ended" and self.done.called:
            return
        if not self.report.connected:
            # Autobahn's reason names the HTTP status of a rejected upgrade ("... upgrade failed [403]: ...").
            self._error(f"{self.url}: {reason or 'WebSocket upgrade failed: connection closed during the handshake'}")
        else:
            self.report.hung_up_by_bot = not self._hung_up_by_us
            # After the daemon's hang-up message a reset is no error: the message was the close,
            # and a TCP peer that closes with our audio still unread resets rather than closes.
            if not was_clean and not self._hung_up_by_us and self._state != "ended":
                self._error(f"connection lost without a close ({reason})")
        self.report.closed_code = code
        self._finish()

    def connection_failed(self, failure: Failure) -> None:
        if failure.check(ConnectionRefusedError):
            self._error(f"connection refused by {self.url} (is the daemon listening?)")
        else:
            self._error(f"cannot connect to {self.url}: {failure.getErrorMessage()}")
        self._finish()

    # -- caller audio -----------------------------------------------------------
    def _send_frame(self) -> None:
        """Send frame n at t0 + n * 20 ms: an absolute schedule, so lateness never accumulates."""
        n = self._frame_no
        self.report.max_send_lag_ms = max(self.report.max_send_lag_ms, (self.now() - n * FRAME_S) * 1000)
        line = self._speaking
        payload = SILENT_FRAME
        if line is not None:
            payload = line.frames[line.position]
            if line.position < len(line.dtmf):
                self._send_all(self.wire.digit(line.dtmf[line.position]))
            turn = self.report.turns[-1]
            if line.position == line.first_voiced:
                turn.speech_start_s = self.now()
            if line.position == line.last_voiced:
                turn.speech_end_s = self.now()
            line.position += 1
        message = self._speech(payload, n * FRAME_MS)
        if message is not None:
            self._link.send(message)
        self._caller_audio += payload
        self._frame_no += 1
        if line is not None and line.position == len(line.frames):
            self._speaking = None
            self._listen()
        delay = self._t0 + self._frame_no * FRAME_S - self.clock.seconds()
        self._pace_timer = self.clock.callLater(max(0.0, delay), self._send_frame)

    def _speak(self, line: CallerLine) -> None:
        chunks = frames(line.audio) or [SILENT_FRAME]
        chunks += [SILENT_FRAME] * (len(line.dtmf) - len(chunks))  # a frame per key
        voiced = speech_frames(chunks) or [0, len(chunks) - 1]
        self._speaking = _Line(chunks, voiced[0], voiced[-1], line.dtmf)
        self._state = "speaking"
        self.report.turns.append(TurnObservation(line.text, None, None, None, None, None, line.barge_in_ms))

    # -- turn taking ------------------------------------------------------------
    def _listen(self) -> None:
        self._state = "listening"
        self._listen_start_s = self.now()
        # A reply already playing when the caller stops counts as heard.
        playing = self._playback.playing() and self._reply is not None
        self._reply_seen = playing
        self._listen_play_start_s = self._playback.seconds(self._reply.play_start) if playing else None
        self._schedule_turn()

    def _turn_due_s(self) -> float | None:
        if self._state != "listening":
            return None
        upcoming = self.lines[self._next_line] if self._next_line < len(self.lines) else None
        if upcoming is not None and upcoming.barge_in_ms is not None and self._listen_play_start_s is not None:
            return self._listen_play_start_s + upcoming.barge_in_ms / 1000
        if not self._reply_seen:
            return self._listen_start_s + self.config.reply_timeout_s
        wait = self.config.pause_s if upcoming is not None else self.config.hangup_grace_s
        return self._last_activity_s() + wait

    def _last_activity_s(self) -> float:
        return max(self._last_rx_s, self._playback.seconds(self._playback.end_sample))

    def _schedule_turn(self) -> None:
        if self._turn_timer is not None and self._turn_timer.active():
            self._turn_timer.cancel()
        due = self._turn_due_s()
        self._turn_timer = None if due is None else self.clock.callLater(max(0.0, due - self.now()), self._turn)

    def _turn(self) -> None:
        self._turn_timer = None
        due = self._turn_due_s()
        if due is None:
            return
        if due > self.now() + EPSILON_S:
            self._schedule_turn()
        elif self._next_line < len(self.lines):
            self._next_line += 1
            self._speak(self.lines[self._next_line - 1])
        else:
            self._hang_up()

    # -- bot audio --------------------------------------------------------------
    def _close_stale_reply(self) -> None:
        """Replies are segmented by audio timing: a gap longer than reply_gap_s
        with nothing received and nothing playing ends the current one."""
        if self._reply is not None and self.now() - self._last_activity_s() > self.config.reply_gap_s:
            self._close_reply(interrupted=False)

    def _bot_media(self, ulaw: bytes) -> None:
        now = self.now()
        self._close_stale_reply()
        if not ulaw:
            return
        start = self._playback.enqueue(ulaw)
        start_s = self._playback.seconds(start)
        if self._reply is None:
            pending = self._pending_start_s
            opened = pending if pending is not None and now - pending <= self.config.reply_gap_s else now
            self._reply = _OpenReply(opened, now, start)
            self._pending_start_s = None
        self._last_rx_s = now
        turn = self.report.turns[-1] if self.report.turns else None
        if turn is not None and turn.first_reply_audio_ms is None and turn.speech_end_s is not None:
            turn.first_reply_audio_ms = (now - turn.speech_end_s) * 1000
            turn.playback_start_ms = (start_s - turn.speech_end_s) * 1000
            if self._reply.turn_index is None:
                self._reply.turn_index = len(self.report.turns) - 1
        if self._state == "listening":
            self._reply_seen = True
            if self._listen_play_start_s is None:
                self._listen_play_start_s = start_s
        self._schedule_turn()

    def _bot_marker(self, name: str) -> None:
        self._close_stale_reply()
        self._mark_received.setdefault(name, deque()).append(self.now())
        self._playback.mark(name)

    def _bot_clear(self) -> None:
        now = self.now()
        self.report.clears.append(now)
        dropped = self._playback.clear()
        if self._reply is not None:
            self._close_reply(interrupted=dropped > 0)
        for turn in self.report.turns:
            if turn.barge_in_ms is not None and turn.clear_after_onset_ms is None and turn.speech_start_s is not None:
                turn.clear_after_onset_ms = (now - turn.speech_start_s) * 1000
        self._schedule_turn()

    def _close_reply(self, interrupted: bool) -> None:
        reply, self._reply = self._reply, None
        end = max(self._playback.end_sample, reply.play_start)  # a clear or hang-up has cut the timeline already
        self.report.replies.append(
            BotReply(
                start_s=reply.start_s,
                first_audio_s=reply.first_audio_s,
                play_start_s=self._playback.seconds(reply.play_start),
                end_s=self._playback.seconds(end),
                audio=bytes(self._playback.timeline[reply.play_start : end]),
                interrupted=interrupted,
                turn_index=reply.turn_index,
            )
        )

    def _marker_played(self, name: str) -> None:
        if self._state == "ended":
            return
        received = self._mark_received.get(name)
        received_s = received.popleft() if received else self.now()
        self.report.marks_echoed.append(MarkEcho(name, received_s, self.now()))
        if self._reply is None and self._pending_start_s is None:
            self._pending_start_s = received_s  # a mark ahead of a reply's audio opens the reply
        self._send_all(self.wire.marker_played(name))

    # -- the end ----------------------------------------------------------------
    def _too_long(self) -> None:
        self._limit_timer = None
        self._error(f"the call reached its maximum duration ({self.config.max_duration_s:g} s); hanging up")
        self._hang_up()

    def _hang_up(self) -> None:
        if self._hung_up_by_us:
            return
        self._hung_up_by_us = True
        self._send_all(self.wire.hang_up())
        self._stop_timers()
        self._state = "ended"
        self._link.hang_up()

    def _bot_hung_up(self) -> None:
        """The daemon hung up in a message: the carrier closes its side (``closed`` reports it)."""
        self._stop_timers()
        self._state = "ended"
        self._link.hang_up()

    def _send_all(self, messages: list[Outbound]) -> None:
        for message in messages:
            self._link.send(message)

    def _stop_timers(self) -> None:
        for timer in (self._pace_timer, self._turn_timer, self._limit_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._pace_timer = self._turn_timer = self._limit_timer = None

    def _finish(self) -> None:
        self._stop_timers()
        self._state = "ended"
        report = self.report
        if self._playback is not None:
            report.duration_s = self.now()
            dropped = self._playback.close()
            report.audio_dropped_at_hangup_ms = dropped * 1000 // SAMPLE_RATE
            if self._reply is not None:
                self._close_reply(interrupted=False)
            heard = self._playback.timeline
            heard += ULAW_SILENCE * max(0, len(self._caller_audio) - len(heard))
            report.bot_audio = bytes(heard)
            report.caller_audio = bytes(self._caller_audio)
            report.frames_sent = self._frame_no
        if not self.done.called:
            self.done.callback(report)

    def _error(self, message: str) -> None:
        if message not in self.report.errors:
            self.report.errors.append(message)
