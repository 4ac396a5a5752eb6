"""A WAV file that is playable at every moment it is being written.

16-bit PCM, 8 kHz, two channels: the plainest WAV there is, which every player, every
browser's <audio> and Python's own ``wave`` module open. A WAV says its length in two
places (the RIFF size and the data size); a file whose writer dies before the end would
say zero and most players would play nothing. So every ``append`` writes the audio and
then the two sizes, and flushes: a crash (kill -9, an exception) leaves a file that plays
up to the last append. ``close`` also syncs it to the disk.

Blocking: only the recordings' writer thread (``voiced.recording.writer``) calls it.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from voiced.audio import SAMPLE_RATE

CHANNELS = 2
SAMPLE_WIDTH = 2
BLOCK_ALIGN = CHANNELS * SAMPLE_WIDTH
HEADER_BYTES = 44
# RIFF sizes are 32-bit: about 37 hours of this format; a recording stops growing there.
MAX_DATA_BYTES = 0xFFFFFFFF - HEADER_BYTES + 8 - BLOCK_ALIGN + 1


def header(data_bytes: int) -> bytes:
    byte_rate = SAMPLE_RATE * BLOCK_ALIGN
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, CHANNELS, SAMPLE_RATE, byte_rate, BLOCK_ALIGN, SAMPLE_WIDTH * 8)
            + b"data" + struct.pack("<I", data_bytes))


class WavFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.data_bytes = 0
        # Exclusive creation (a recording never overwrites another one), readable by voiced's
        # user only: a call's audio is personal data.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._file.write(header(0))
        self._file.flush()

    @property
    def closed(self) -> bool:
        return self._file is None

    def append(self, frames: bytes) -> int:
        """Write interleaved stereo samples and make the header say so; the bytes written
        (fewer only at the 32-bit size limit)."""
        f = self._file
        if f is None:
            raise ValueError(f"{self.path} is closed")
        frames = frames[: len(frames) - len(frames) % BLOCK_ALIGN]
        frames = frames[: max(0, MAX_DATA_BYTES - self.data_bytes)]
        if not frames:
            return 0
        f.seek(HEADER_BYTES + self.data_bytes)
        f.write(frames)
        self.data_bytes += len(frames)
        self._write_sizes(f)
        f.flush()
        return len(frames)

    def close(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            self._write_sizes(f)
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()

    def _write_sizes(self, f: BinaryIO) -> None:
        f.seek(4)
        f.write(struct.pack("<I", 36 + self.data_bytes))
        f.seek(40)
        f.write(struct.pack("<I", self.data_bytes))
