"""A call's recent audio (``AudioLog``), addressed by absolute byte offsets since the call began.

The streaming engines' ledgers (``voiced.stt.ledger``) and the fallback chain
(``voiced.stt.fallback``) keep it so a new stream or engine can be given what came
before it.
"""

from __future__ import annotations

#: Dead audio is cut off the buffer in slices, not per frame (a bytearray shifts on every cut).
TRIM_SLACK_BYTES = 8000


class AudioLog:
    """The call's recent audio, addressed by absolute offsets since the call began."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + len(self._buf)

    def append(self, audio: bytes) -> None:
        self._buf += audio

    def since(self, offset: int) -> bytes:
        return bytes(self._buf[max(offset, self.start) - self.start :])

    def forget_before(self, offset: int) -> None:
        if offset - self.start >= TRIM_SLACK_BYTES:
            cut = min(offset - self.start, len(self._buf))
            del self._buf[:cut]
            self.start += cut
