"""The recordings of the whole process (``--recordings DIR``): the service owns one, from
``startService`` to ``stopService``. It owns the disk writer thread and the daily sweep
that deletes recordings older than ``--recording-retention-days``; each call's
``CallLink`` asks it for that call's ``CallRecording`` when the call starts.

Files are ``DIR/YYYY-MM-DD/HHMMSS-<call id>-<6 hex>.wav`` (UTC): a day per folder, so a
sweep and a person both find their way; the random tail keeps two calls with one id
(a test caller's) apart. The call's record (and so the journal) names the file.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from voiced.recording.tap import CallRecording
from voiced.recording.writer import RecordingWriter

if TYPE_CHECKING:
    from voiced.call.turn import Call

log = Logger(namespace="voiced.recording")

SWEEP_INTERVAL_S = 24 * 3600.0
DAY_S = 24 * 3600.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def file_name(call_id: str, wall_time: float, token: str) -> str:
    """The recording's path under the recordings directory."""
    stamp = time.gmtime(wall_time)
    safe_id = _UNSAFE.sub("_", call_id).strip("._")[:64] or "call"
    return os.path.join(time.strftime("%Y-%m-%d", stamp), f"{time.strftime('%H%M%S', stamp)}-{safe_id}-{token}.wav")


class Recordings:
    def __init__(self, directory: str, retention_days: int, clock: Any,
                 wall_clock: Callable[[], float] = time.time, writer: RecordingWriter | None = None) -> None:
        self.directory = os.path.abspath(directory)
        self.retention_days = retention_days
        self._clock = clock
        self._wall_clock = wall_clock
        self.writer = writer or RecordingWriter(clock)
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock

    def start(self) -> None:
        self.writer.start()
        log.info("RECORDINGS dir={dir} retention_days={days}", dir=self.directory, days=self.retention_days or "-")
        if self.retention_days:
            self._sweeper.start(SWEEP_INTERVAL_S, now=True)

    def stop(self) -> Deferred[None]:
        """Stop sweeping; the writer finishes what it was given (every file closed)."""
        if self._sweeper.running:
            self._sweeper.stop()
        return self.writer.stop()

    def sweep(self) -> Deferred[int]:
        """Delete the recordings older than the retention; fires with how many."""
        d = self.writer.sweep(self.directory, self.retention_days * DAY_S)

        def swept(removed: int) -> int:
            if removed:
                log.info("RECORDINGS_SWEPT removed={removed} older_than_days={days}", removed=removed,
                         days=self.retention_days)
            return removed

        return d.addCallback(swept)

    def open(self, call: "Call") -> CallRecording | None:
        """Start recording ``call`` (its record then names the file); None when the writer is not running."""
        path = os.path.join(self.directory, file_name(call.call_id, self._wall_clock(), secrets.token_hex(3)))
        if not self.writer.open(path):
            return None
        call.record.recording = path
        return CallRecording(call.call_id, path, call.record.started_at, self._clock, self.writer)

    def readable(self, path: str) -> str | None:
        """``path`` if it is a recording of this directory that exists (what the console serves)."""
        if not path:
            return None
        real = os.path.realpath(path)
        if os.path.commonpath([real, os.path.realpath(self.directory)]) != os.path.realpath(self.directory):
            return None
        return real if os.path.isfile(real) else None
