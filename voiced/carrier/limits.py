"""Hard limits on one media socket, so that a faulty or hostile peer costs only its own call.

- ``MediaRate``: the caller's audio may run at most ``BURST_S`` ahead of real time
  (network jitter delivers frames in bunches); frames beyond that are dropped, and a
  peer that keeps flooding (``FLOOD_CLOSE_S`` of excess audio) is closed with 1008.
  Nothing is queued: the only buffer is the allowance itself.
- ``outbound_backlog``: bytes written to a socket that the kernel has not taken yet.
  A peer that stops reading makes it grow; past ``MAX_OUTBOUND_BYTES`` the socket is
  dropped instead of buffering the bot's audio without end.
Pure apart from the transport introspection: the clock is handed in.
"""

from __future__ import annotations

from typing import Any

from voiced.audio import FRAME_BYTES, FRAME_MS

BURST_S = 2.0
FLOOD_CLOSE_S = 5.0
# About a minute of the bot's audio as base64 in JSON: far above what a reading peer leaves unsent.
MAX_OUTBOUND_BYTES = 1024 * 1024


class MediaRate:
    """Counts the caller's audio against the clock from the first frame."""

    def __init__(self, burst_s: float = BURST_S, flood_close_s: float = FLOOD_CLOSE_S) -> None:
        self._frame_s = FRAME_MS / 1000
        self._burst_frames = burst_s / self._frame_s
        self._close_frames = flood_close_s / self._frame_s
        self._started: float | None = None
        self.accepted = 0
        self.dropped = 0

    def admit(self, payload_bytes: int, now: float) -> bool:
        """True to pass these frames on; False to drop them (``flooding`` says whether to close)."""
        frames = payload_bytes // FRAME_BYTES or 1  # max(1, ...) without the builtin's call
        if self._started is None:
            self._started = now
        allowed = (now - self._started) / self._frame_s + self._burst_frames
        if self.accepted + frames <= allowed:
            self.accepted += frames
            return True
        self.dropped += frames
        return False

    @property
    def flooding(self) -> bool:
        return self.dropped >= self._close_frames


def outbound_backlog(transport: Any) -> int:
    """Unsent bytes of a Twisted TCP transport (through TLS wrappers); 0 when unknown."""
    for _ in range(4):  # TLSMemoryBIOProtocol and ProtocolWrapper sit on the TCP transport
        if transport is None:
            return 0
        buffered = getattr(transport, "dataBuffer", None)
        if buffered is not None and hasattr(transport, "_tempDataLen"):
            return len(buffered) - getattr(transport, "offset", 0) + int(transport._tempDataLen)
        transport = getattr(transport, "transport", None)
    return 0
