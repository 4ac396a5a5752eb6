"""Asterisk AudioSocket frames: a pure model, split from a TCP byte stream and serialized.

Grammar (docs.asterisk.org, Configuration/Channel-Drivers/AudioSocket; Asterisk's
``include/asterisk/res_audiosocket.h``): every frame is a 1-byte kind, a 2-byte
big-endian payload length, then the payload.

  0x00        hang-up, no payload (closing the socket is "also sufficient")
  0x01        the call's UUID, 16 bytes (always the first frame Asterisk sends)
  0x03        a DTMF digit, 1 ASCII byte (Asterisk 20.14, 21.9, 22.4, 23.0 and later)
  0x10        audio, signed linear 16-bit little-endian mono at 8 kHz (320 bytes per 20 ms)
  0x11-0x18   audio at 12, 16, 24, 32, 44.1, 48, 96, 192 kHz (20.17, 21.12, 22.7, 23.1 and later)
  0xff        an error; the payload is an optional application-specific code

Sources disagree on the wider rates: the first version of the change (asterisk PR 1492,
and documentation PR 158 that still shows in some copies) made 0x11 slin16; it was
replaced before any release by one kind per rate, 0x11 slin12 and 0x12 slin16
(asterisk commit ff0523a3, "res_audiosocket: add message types for all slin sample
rates"), which the current header, docs.asterisk.org and CyCoreSystems' README agree on.
This module follows the released numbering. voiced speaks the rates its codec does:
8, 16 and 24 kHz (0x10, 0x12, 0x13); the other rates are refused with a clear reason.
No sockets here: the protocol module feeds bytes in and writes the frames out.
"""

from __future__ import annotations

import uuid

from voiced.audio import AudioFormat

HANG_UP = 0x00
UUID = 0x01
DTMF = 0x03
AUDIO_8K = 0x10
ERROR = 0xFF

#: Every audio kind Asterisk defines, and its sample rate.
AUDIO_RATES = {0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000, 0x15: 44100, 0x16: 48000,
               0x17: 96000, 0x18: 192000}
#: The audio kinds voiced speaks, and the call's format for each.
AUDIO_FORMATS = {kind: AudioFormat("pcm_s16le", AUDIO_RATES[kind]) for kind in (0x10, 0x12, 0x13)}
KIND_OF_RATE = {fmt.sample_rate: kind for kind, fmt in AUDIO_FORMATS.items()}
SLIN_8K = AUDIO_FORMATS[AUDIO_8K]

#: The longest payload accepted. Asterisk forwards its channel's frames (10-60 ms): 20 ms of
#: its widest audio (192 kHz) is 7680 bytes. Anything longer is not Asterisk talking.
MAX_PAYLOAD = 8192
HEADER_BYTES = 3
DTMF_DIGITS = frozenset("0123456789*#ABCD")

# Error codes voiced sends in an error frame before it closes (Asterisk's own codes are
# 0x01, 0x02 and 0x04, all from its side; it hangs the channel up on any error frame).
ERROR_UNAVAILABLE = 0x10  # draining, not ready or at max_calls (HTTP 503 on the WebSocket carriers)
ERROR_REFUSED = 0x11  # not admitted: an unsigned UUID, the carrier off, a media flood (1008)
ERROR_PROTOCOL = 0x12  # no UUID in time, malformed frames, an audio format voiced does not speak
ERROR_INTERNAL = 0x13


class ProtocolError(ValueError):
    """Bytes that are not AudioSocket, or a frame whose payload does not fit its kind."""


class FrameTooLong(ProtocolError):
    """A header announcing more than MAX_PAYLOAD bytes: the stream cannot be trusted past it."""


class FrameSplitter:
    """Whole frames out of a TCP byte stream, holding at most one partial frame between reads
    (so at most HEADER_BYTES + MAX_PAYLOAD bytes)."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = b""

    @property
    def pending(self) -> int:
        """Bytes of a frame that has not arrived whole yet."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The (kind, payload) of every frame completed by ``data``. Raises FrameTooLong at
        a header announcing an oversized payload (the frames before it are lost with it:
        the connection closes)."""
        if self._partial:
            data = self._partial + data
            self._partial = b""
        frames = []
        pos, end = 0, len(data)
        while end - pos >= HEADER_BYTES:
            length = (data[pos + 1] << 8) | data[pos + 2]
            if length > MAX_PAYLOAD:
                raise FrameTooLong(f"frame of kind {data[pos]:#04x} announces {length} bytes "
                                   f"(at most {MAX_PAYLOAD})")
            stop = pos + HEADER_BYTES + length
            if stop > end:
                break
            frames.append((data[pos], data[pos + HEADER_BYTES:stop]))
            pos = stop
        if pos < end:
            self._partial = data[pos:]
        return frames


def parse_uuid(payload: bytes) -> uuid.UUID:
    if len(payload) != 16:
        raise ProtocolError(f"UUID frame of {len(payload)} bytes (a UUID is 16)")
    return uuid.UUID(bytes=payload)


def parse_dtmf(payload: bytes) -> str:
    if len(payload) != 1:
        raise ProtocolError(f"DTMF frame of {len(payload)} bytes (a digit is 1)")
    digit = chr(payload[0])
    if digit not in DTMF_DIGITS:
        raise ProtocolError(f"DTMF frame with {payload!r}, not a key of 0-9, *, #, A-D")
    return digit


def audio_format(kind: int) -> AudioFormat:
    """The call format of audio kind ``kind``; ProtocolError for a kind voiced does not speak."""
    fmt = AUDIO_FORMATS.get(kind)
    if fmt is None:
        rate = AUDIO_RATES.get(kind)
        if rate is None:
            raise ProtocolError(f"{kind:#04x} is not an audio kind")
        raise ProtocolError(f"audio kind {kind:#04x} ({rate} Hz) is not one voiced speaks: dial with "
                            f"c(slin), c(slin16) or c(slin24)")
    return fmt


def describe(kind: int) -> str:
    """A kind's name for log lines."""
    if kind in AUDIO_RATES:
        return f"audio/{AUDIO_RATES[kind]}"
    return {HANG_UP: "hang-up", UUID: "uuid", DTMF: "dtmf", ERROR: "error"}.get(kind, f"kind {kind:#04x}")


def frame(kind: int, payload: bytes = b"") -> bytes:
    """One frame; ``payload`` must fit the 16-bit length (voiced writes 20 ms frames)."""
    n = len(payload)
    if n > 0xFFFF:
        raise ValueError(f"an AudioSocket payload is at most 65535 bytes, not {n}")
    return bytes((kind, n >> 8, n & 0xFF)) + payload


def hang_up_frame() -> bytes:
    return b"\x00\x00\x00"


def error_frame(code: int) -> bytes:
    return bytes((ERROR, 0, 1, code))


def uuid_frame(call_uuid: uuid.UUID) -> bytes:
    return frame(UUID, call_uuid.bytes)


def dtmf_frame(digit: str) -> bytes:
    if digit not in DTMF_DIGITS or len(digit) != 1:
        raise ValueError(f"DTMF keys are 0-9, *, #, A-D, not {digit!r}")
    return frame(DTMF, digit.encode("ascii"))
