"""What the bot said, in the daemon's own words, matched to the replies the caller heard.

The caller's side only has audio, and its Whisper mishears names ("the river find
clinic" for "the Riverside Clinic"). The daemon knows its words: each reply's ``BOT``
log line, and the ``reply`` events of its console. Both come with a time, which is
when the daemon had sent all of the reply's audio; that lies inside the reply as the
caller heard it (after its first audio, before the next reply's), so every line goes
to the caller's reply whose first audio came last before it.
"""

from __future__ import annotations

import ast
import calendar
import json
import re
import time
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # report.py prints with heard_differs: no import back at run time
    from voiced.caller.report import CallReport

#: The daemon logs a reply's words just after its last audio left; the caller may read that
#: audio a moment later (a busy reactor, a network): so much earlier still counts as within.
ATTRIBUTION_SLACK_S = 0.25

#: Below this word-level similarity the caller's side heard something else than what the bot
#: said (cut, garbled, missing), not just Whisper's spelling of a name: the print shows both.
HEARD_DIFFERS_BELOW = 0.5


@dataclass(frozen=True)
class SaidLine:
    at: float  # clock seconds (the caller's reactor clock, which is the wall clock) the daemon said it
    text: str


def words(text: str) -> list[str]:
    """Lower-case words and numbers, punctuation dropped, "8am" as "8 am" (as "8 AM" is),
    "river-side" and "didn't" as one word each."""
    return re.findall(r"[^\W\d_]+|\d+", re.sub(r"(?<=\w)['’-](?=\w)", "", text.lower()))


def similarity(said: str, heard: str) -> float:
    """Word-level likeness in [0, 1] (difflib's ratio over the words)."""
    a, b = words(said), words(heard)
    if not a and not b:
        return 1.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def heard_differs(said: str, heard: str) -> bool:
    return similarity(said, heard) < HEARD_DIFFERS_BELOW


def attribute(report: "CallReport", said: list[SaidLine]) -> None:
    """Fill each reply's ``said`` with the daemon's words for it (several, as one, when the
    caller heard a filler and its answer run together)."""
    if not report.replies:
        return
    parts: list[list[str]] = [[] for _ in report.replies]
    for line in sorted(said, key=lambda s: s.at):
        t = line.at - report.opened_at
        index = 0
        for i, reply in enumerate(report.replies):
            if reply.first_audio_s <= t + ATTRIBUTION_SLACK_S:
                index = i
        parts[index].append(line.text)
    for reply, texts in zip(report.replies, parts):
        reply.said = " ".join(texts)


# -- the daemon's log ------------------------------------------------------------------------------

_TEXT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z \S+ \[[^\]]*\] (.*)$")
_BOT = re.compile(r"^BOT call=(\S+) reply=\S+ actions=\S+ text=(.*)$")
_CALL_END = re.compile(r"^CALL_END call=(\S+) ")


def _parse_time(seconds: str, millis: str) -> float:
    return calendar.timegm(time.strptime(seconds, "%Y-%m-%dT%H:%M:%S")) + int(millis) / 1000


def _log_messages(log_text: str) -> list[tuple[float, str]]:
    """(time, message) of every line, in the text format or the JSON one (voiced.logging)."""
    out: list[tuple[float, str]] = []
    for raw in log_text.splitlines():
        if raw.startswith("{"):
            try:
                record = json.loads(raw)
                stamp = _TEXT_LINE.match(f"{record['time']} - [-] {record['message']}")
            except (ValueError, KeyError, TypeError):
                continue
        else:
            stamp = _TEXT_LINE.match(raw)
        if stamp:
            out.append((_parse_time(stamp.group(1), stamp.group(2)), stamp.group(3)))
    return out


def log_said(log_text: str, call_sid: str) -> list[SaidLine]:
    """The ``BOT`` lines of ``call_sid`` in a daemon log: every word the caller was sent."""
    said = []
    for at, message in _log_messages(log_text):
        match = _BOT.match(message)
        if match and match.group(1) == call_sid:
            try:
                text = ast.literal_eval(match.group(2))  # the line holds the text's repr()
            except (ValueError, SyntaxError):
                continue
            if isinstance(text, str) and text:
                said.append(SaidLine(at, text))
    return said


def log_ended(log_text: str, call_sid: str) -> bool:
    """Whether the log has the call's ``CALL_END`` (so every ``BOT`` line of it is written)."""
    return any((m := _CALL_END.match(message)) and m.group(1) == call_sid for _, message in _log_messages(log_text))
