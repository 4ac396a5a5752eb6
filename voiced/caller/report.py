"""What a simulated call observed, and how voiced-call prints it.

All times are seconds on the call's own clock: 0 is the moment the WebSocket
opened. Latencies are milliseconds. Audio is 8 kHz mu-law laid out on that
clock (sample ``n`` is at ``n / 8000`` s), so the bot's audio "as heard" keeps
its silences and its cuts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import numpy as np

from voiced.audio import duration_ms, pcm16_to_ulaw, ulaw_to_pcm16
from voiced.caller.bot_words import heard_differs


@dataclass
class BotReply:
    start_s: float  # first daemon message of the reply (a mark sent just before the audio counts)
    first_audio_s: float  # first bot media frame received
    play_start_s: float  # when that audio began to play (later if older audio was still queued)
    end_s: float  # when the last of it finished playing, or was cut by clear / hang-up
    audio: bytes = field(repr=False)  # the reply as heard, silences within it included
    interrupted: bool  # a clear dropped some of it before it played
    text: str = ""  # what the caller's side heard (its Whisper transcript)
    turn_index: int | None = None  # the caller line this reply answers (None: the greeting)
    said: str = ""  # what the bot said, in the daemon's own words ("" when unknown)


@dataclass
class TurnObservation:
    line_text: str
    speech_start_s: float | None  # first voiced frame sent
    speech_end_s: float | None  # last voiced frame sent (the energy-based end of speech)
    first_reply_audio_ms: float | None  # speech end -> first bot media received
    playback_start_ms: float | None  # speech end -> that audio starting to play
    clear_after_onset_ms: float | None  # barge-in lines: speech onset -> clear received
    barge_in_ms: int | None = None


@dataclass(frozen=True)
class MarkEcho:
    name: str
    received_s: float
    echoed_s: float


@dataclass
class CallReport:
    call_sid: str
    stream_sid: str
    url: str
    connected: bool = False
    hung_up_by_bot: bool = False
    closed_code: int | None = None
    duration_s: float = 0.0
    frames_sent: int = 0
    max_send_lag_ms: float = 0.0  # worst lateness of a media frame against its 20 ms schedule
    bot_audio: bytes = field(default=b"", repr=False)  # heard bot audio over the whole call
    caller_audio: bytes = field(default=b"", repr=False)  # every frame the caller sent, in order
    audio_dropped_at_hangup_ms: int = 0  # bot audio still queued when the WebSocket closed
    replies: list[BotReply] = field(default_factory=list)
    turns: list[TurnObservation] = field(default_factory=list)
    marks_echoed: list[MarkEcho] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    transcript_language: str | None = None  # the language the replies' text was transcribed in
    not_transcribed: str = ""  # why the replies have no text though transcription was asked for
    carrier: str = "twilio"  # the carrier voiced-call spoke as (voiced.caller.carriers)
    opened_at: float = 0.0  # the call's time 0 on the caller's clock (the wall clock, for a real reactor)
    said_from: str = ""  # where the replies' ``said`` came from (the console's URL, the log's path)
    end_reason: str = ""  # who ended the call and why, as the daemon recorded it ("" unknown)

    @property
    def completed(self) -> bool:
        """Connected and heard the bot: what the CLI's exit code is about."""
        return self.connected and any(r.audio for r in self.replies)


class BlockingTranscriber(Protocol):
    #: Whether the model knows the language it was made for (an English-only one does not know he-IL).
    serves_language: bool

    def transcribe_blocking(self, ulaw: bytes) -> str: ...


def transcribe_replies(report: CallReport, transcriber: BlockingTranscriber) -> None:
    """Fill ``BotReply.text``. Blocking: run it in a thread, or after the reactor stops."""
    for reply in report.replies:
        if reply.audio.strip(b"\xff"):
            reply.text = transcriber.transcribe_blocking(reply.audio).strip()


def transcribe_calls(
    reports: list[CallReport], transcriber: BlockingTranscriber, language_code: str, model: str = "the Whisper model"
) -> str | None:
    """Fill every reply's text in ``language_code``, which ``transcriber`` was made for. Blocking.

    A model without the language would write English nonsense: then nothing is
    transcribed, every report says why, and the sentence to print once comes back.
    """
    if not transcriber.serves_language:
        for report in reports:
            report.not_transcribed = f"the Whisper model does not know {language_code}"
        return (f"{model} does not know {language_code}: the bot's replies are not transcribed "
                "(a multilingual model transcribes them: --whisper-model DIR)")  # fmt: skip
    for report in reports:
        transcribe_replies(report, transcriber)
        report.transcript_language = language_code
    return None


def mixed_audio(report: CallReport) -> bytes:
    """Both sides of the call on one track, as a listener on the line would hear them."""
    length = max(len(report.bot_audio), len(report.caller_audio))
    total = np.zeros(length, dtype=np.int32)
    for side in (report.bot_audio, report.caller_audio):
        pcm = np.frombuffer(ulaw_to_pcm16(side), dtype=np.int16)
        total[: len(pcm)] += pcm
    return pcm16_to_ulaw(np.clip(total, -32768, 32767).astype(np.int16).tobytes())


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def report_dict(report: CallReport) -> dict[str, Any]:
    """The JSON form: audio becomes durations, times are rounded to the millisecond."""
    return {
        "call_sid": report.call_sid,
        "stream_sid": report.stream_sid,
        "url": report.url,
        "carrier": report.carrier,
        "connected": report.connected,
        "completed": report.completed,
        "hung_up_by_bot": report.hung_up_by_bot,
        "closed_code": report.closed_code,
        "duration_s": _r(report.duration_s),
        "frames_sent": report.frames_sent,
        "max_send_lag_ms": _r(report.max_send_lag_ms, 1),
        "bot_audio_ms": duration_ms(report.bot_audio),
        "audio_dropped_at_hangup_ms": report.audio_dropped_at_hangup_ms,
        "replies": [
            {
                "start_s": _r(r.start_s),
                "first_audio_s": _r(r.first_audio_s),
                "play_start_s": _r(r.play_start_s),
                "end_s": _r(r.end_s),
                "audio_ms": duration_ms(r.audio),
                "interrupted": r.interrupted,
                "text": r.text,
                "said": r.said,
                "turn_index": r.turn_index,
            }
            for r in report.replies
        ],
        "turns": [
            {
                "line_text": t.line_text,
                "barge_in_ms": t.barge_in_ms,
                "speech_start_s": _r(t.speech_start_s),
                "speech_end_s": _r(t.speech_end_s),
                "first_reply_audio_ms": _r(t.first_reply_audio_ms, 1),
                "playback_start_ms": _r(t.playback_start_ms, 1),
                "clear_after_onset_ms": _r(t.clear_after_onset_ms, 1),
            }
            for t in report.turns
        ],
        "marks_echoed": [
            {"name": m.name, "received_s": _r(m.received_s), "echoed_s": _r(m.echoed_s)} for m in report.marks_echoed
        ],
        "clears": [_r(t) for t in report.clears],
        "errors": list(report.errors),
        "transcript_language": report.transcript_language,
        "not_transcribed": report.not_transcribed or None,
        "said_from": report.said_from or None,
        "end_reason": report.end_reason or None,
    }


def percentiles(values: Iterable[float]) -> dict[str, float | int | None]:
    """Nearest-rank p50/p90 and the max: each is a latency some turn really had."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p90": None, "max": None}

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 1)

    return {"n": len(ordered), "p50": rank(0.5), "p90": rank(0.9), "max": round(ordered[-1], 1)}


LATENCIES = ("first_reply_audio_ms", "playback_start_ms", "clear_after_onset_ms")


def summary_dict(reports: list[CallReport]) -> dict[str, Any]:
    turns = [t for r in reports for t in r.turns]
    return {
        "calls": len(reports),
        "completed": sum(r.completed for r in reports),
        "hung_up_by_bot": sum(r.hung_up_by_bot for r in reports),
        "turns": len(turns),
        "interrupted_replies": sum(rep.interrupted for r in reports for rep in r.replies),
        "max_send_lag_ms": round(max((r.max_send_lag_ms for r in reports), default=0.0), 1),
        **{
            name: percentiles(v for t in turns if (v := getattr(t, name)) is not None)
            for name in LATENCIES
        },
    }


def run_dict(reports: list[CallReport]) -> dict[str, Any]:
    """What ``voiced-call --json`` prints."""
    return {
        "ok": bool(reports) and all(r.completed for r in reports),
        "calls": [report_dict(r) for r in reports],
        "summary": summary_dict(reports),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def format_conversation(report: CallReport) -> str:
    """The call as a transcript, caller lines and bot replies in the order they were heard."""
    events: list[tuple[float, str]] = []
    for i, turn in enumerate(report.turns):
        note = ""
        if turn.barge_in_ms is not None:
            note = f"   (talked over the bot; clear {_ms(turn.clear_after_onset_ms)} after you started)"
            if turn.clear_after_onset_ms is None:
                note = "   (talked over the bot; it never sent clear)"
        when = turn.speech_start_s if turn.speech_start_s is not None else math.inf
        events.append((when, f"[caller] {turn.line_text or f'(line {i + 1})'}{note}"))
    for reply in report.replies:
        text = reply.said or reply.text or f"({duration_ms(reply.audio) / 1000:.1f} s of audio)"
        if not reply.said and not reply.text and report.not_transcribed:
            text = f"({duration_ms(reply.audio) / 1000:.1f} s of audio, not transcribed: {report.not_transcribed})"
        notes = []
        if reply.turn_index is not None:
            turn = report.turns[reply.turn_index]
            notes.append(f"first audio {_ms(turn.first_reply_audio_ms)} after you stopped talking")
            if turn.playback_start_ms is not None and turn.first_reply_audio_ms is not None:
                queued = turn.playback_start_ms - turn.first_reply_audio_ms
                if queued >= 20:
                    notes.append(f"played {queued:.0f} ms later")
        if reply.interrupted:
            notes.append(f"cut after {reply.end_s - reply.play_start_s:.1f} s")
        suffix = f"   ({'; '.join(notes)})" if notes else ""
        line = f"[bot]    {text}{suffix}"
        if reply.said and reply.text and (reply.interrupted or heard_differs(reply.said, reply.text)):
            line += f"\n         (the caller's side heard: {reply.text})"
        elif reply.said and not reply.text and report.transcript_language and reply.audio.strip(b"\xff"):
            line += "\n         (the caller's side heard no words in it)"
        events.append((reply.play_start_s, line))
    events.sort(key=lambda e: e[0])
    return "\n".join(line for _, line in events)


def format_said_source(reports: list[CallReport], unavailable: str = "") -> str:
    """One line before the conversations: whose words the [bot] lines are."""
    sources = sorted({r.said_from for r in reports if r.said_from})
    if sources:
        return (f"(the bot's own words, from {', '.join(sources)}; "
                "what the caller's side heard follows where it differs)")
    why = f": {unavailable}" if unavailable else ""
    return f"(the bot's lines are what the caller's side heard, not the daemon's words{why})"


def format_call_summary(report: CallReport) -> str:
    if not report.connected:
        return f"call {report.call_sid}: never connected"
    ended = "bot hung up" if report.hung_up_by_bot else "caller hung up"
    lines = [
        f"call {report.call_sid}: {ended} after {report.duration_s:.1f} s (close code {report.closed_code}); "
        f"{len(report.turns)} caller lines, {len(report.replies)} bot replies, "
        f"{len(report.marks_echoed)} marks echoed, {len(report.clears)} clears; "
        f"{report.frames_sent} frames sent, worst send lag {report.max_send_lag_ms:.1f} ms"
    ]
    if report.end_reason:
        lines.append(f"  the daemon recorded: {report.end_reason}")
    if report.audio_dropped_at_hangup_ms:
        lines.append(f"  {report.audio_dropped_at_hangup_ms} ms of bot audio was still queued at hang-up (never heard)")
    lines += [f"  error: {e}" for e in report.errors]
    return "\n".join(lines)


def format_summary(reports: list[CallReport]) -> str:
    s = summary_dict(reports)
    out = [
        f"{s['completed']}/{s['calls']} calls completed, {s['turns']} turns, "
        f"{s['interrupted_replies']} replies cut by clear"
    ]
    labels = {
        "first_reply_audio_ms": "speech end -> first bot audio",
        "playback_start_ms": "speech end -> bot audio playing",
        "clear_after_onset_ms": "barge-in onset -> clear",
    }
    for name, label in labels.items():
        p = s[name]
        if p["n"]:
            out.append(
                f"  {label:32} p50 {p['p50']:.0f} ms  p90 {p['p90']:.0f} ms  max {p['max']:.0f} ms  (n={p['n']})"
            )
    return "\n".join(out)

