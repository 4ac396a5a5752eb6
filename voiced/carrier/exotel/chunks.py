"""The bot's audio cut the way Exotel plays it without gaps: pure, no sockets.

Exotel's Voicebot guide sets rules for every media message sent to it: a multiple of
320 bytes, at least 3.2 KB, at most 100 KB. A shorter message "may face audio issues
due to network jitters"; one that is not a multiple of 320 bytes makes Exotel wait
20 ms after its short last packet, a gap in the audio. The guide calls 3.2 KB "100 ms",
which it is only at 16 kHz (at its 8 kHz default it is 200 ms): the byte figures are
the rule both the minimum and the multiple are stated in, so they are what is followed,
for every encoding and rate.

``Rechunker`` sends what it can as soon as it can: whole multiples of 320 bytes once
at least 3.2 KB is waiting, and keeps the rest for the next audio. A marker must
follow the audio before it, so ``flush`` sends the rest at once, padded with silence
to the smallest size the rules allow (the marker's echo then comes after that bit of
silence, as the caller hears it). ``clear`` forgets the rest: it was never sent.
"""

from __future__ import annotations

from voiced.audio import AudioFormat

STEP_BYTES = 320
MIN_BYTES = 3200
#: Below Exotel's 100 KB ceiling: a message of a few hundred ms keeps each frame small,
#: and a clear drops whatever Exotel has buffered however it arrived.
MAX_BYTES = 32000

_SILENCE = {"mulaw": b"\xff", "alaw": b"\xd5", "pcm_s16le": b"\x00", "pcm_s16be": b"\x00"}


class Rechunker:
    """One call's outbound audio, in the call's format."""

    def __init__(self, fmt: AudioFormat, step: int = STEP_BYTES, min_bytes: int = MIN_BYTES,
                 max_bytes: int = MAX_BYTES) -> None:
        if min_bytes % step or max_bytes % step or max_bytes < min_bytes:
            raise ValueError("the chunk sizes must be multiples of the step, the maximum at least the minimum")
        self.silence = _SILENCE[fmt.encoding]
        self.step = step
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._pending = b""

    @property
    def pending(self) -> int:
        """Bytes kept for the next audio or marker."""
        return len(self._pending)

    def audio(self, payload: bytes) -> list[bytes]:
        """The messages' audio to send now for ``payload`` (maybe none)."""
        n = len(payload)
        if not self._pending and self.min_bytes <= n <= self.max_bytes and not n % self.step:
            return [payload]  # the common case: a reply's chunk, already the right size
        data = self._pending + payload
        out = []
        pos, end = 0, len(data)
        while end - pos >= self.min_bytes:
            take = min(self.max_bytes, (end - pos) // self.step * self.step)
            out.append(data[pos:pos + take])
            pos += take
        self._pending = data[pos:]
        return out

    def flush(self) -> bytes:
        """The rest, padded with silence to a size Exotel takes (b"" when nothing is kept)."""
        rest, self._pending = self._pending, b""
        if not rest:
            return b""
        size = max(self.min_bytes, -(-len(rest) // self.step) * self.step)
        return rest + self.silence * (size - len(rest))

    def clear(self) -> None:
        self._pending = b""
