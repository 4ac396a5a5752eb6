"""One call's recording: what its ``CallLink`` taps (the caller's audio in, the bot's
audio out, the clears, the end) goes through the call's ``Timeline`` and, a second of
audio at a time, to the process's ``RecordingWriter``. Holds at most about a second of
audio plus the bot audio not yet played, however long the call. Every method runs on
the reactor thread."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from voiced.audio import SAMPLE_RATE
from voiced.recording.timeline import Timeline
from voiced.recording.wav import BLOCK_ALIGN
from voiced.recording.writer import RecordingWriter

log = Logger(namespace="voiced.recording")

#: How much audio is handed to the writer at once: a crash loses at most this much.
FLUSH_BYTES = SAMPLE_RATE * BLOCK_ALIGN  # one second


class CallRecording:
    def __init__(self, call_id: str, path: str, origin: float, clock: IReactorTime, writer: RecordingWriter) -> None:
        self.call_id = call_id
        self.path = path
        self.timeline = Timeline(origin)
        self._clock = clock
        self._writer = writer
        self._pending = bytearray()
        self.closed = False
        self._dropped_logged = False

    def caller(self, ulaw: bytes) -> None:
        if not self.closed:
            self._add(self.timeline.caller(ulaw, self._clock.seconds()))

    def bot(self, ulaw: bytes) -> None:
        if not self.closed:
            self.timeline.bot(ulaw, self._clock.seconds())

    def clear(self) -> None:
        if not self.closed:
            self.timeline.clear(self._clock.seconds())

    def close(self) -> None:
        """The call ended: write what played up to now and close the file. Its ``RECORDING``
        line follows once the file is whole on disk, so that whoever reads it can open the file."""
        if self.closed:
            return
        self.closed = True
        self._pending += self.timeline.finish(self._clock.seconds())
        self._flush()
        self._writer.close(self.path).addCallback(self._closed)

    def _closed(self, _: None) -> None:
        t = self.timeline
        log.info("RECORDING call={call} path={path} seconds={seconds:.1f} caller_gap_ms={gap} caller_dropped_ms={drop}"
                 " bot_cleared_ms={cleared}", call=self.call_id, path=self.path, seconds=t.written / SAMPLE_RATE,
                 gap=t.caller_silence_filled // 8, drop=t.caller_dropped // 8, cleared=t.bot_cleared // 8)

    def _add(self, frames: bytes) -> None:
        self._pending += frames
        if len(self._pending) >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        chunk, self._pending = bytes(self._pending), bytearray()
        if not self._writer.append(self.path, chunk) and not self._dropped_logged:
            self._dropped_logged = True
            log.warn("RECORDING_BEHIND call={call}: the disk is not keeping up; silence stands in for "
                     "the audio dropped from {path}",
                     call=self.call_id, path=self.path)
