"""Call recordings read back: the stereo WAV's channels and where sound starts and ends in them."""

from __future__ import annotations

import struct

from voiced.audio import audioop


FRAME = 160  # 20 ms of 8 kHz mu-law


LOUD = audioop.lin2ulaw(struct.pack("<h", 8000) * FRAME, 2)  # a steady tone's level: not silence


def channels(stereo: bytes) -> tuple[list[int], list[int]]:
    samples = struct.unpack(f"<{len(stereo) // 2}h", stereo)
    return list(samples[0::2]), list(samples[1::2])


def first_sound(samples: list[int], level: int = 1000) -> int | None:
    return next((i for i, s in enumerate(samples) if abs(s) > level), None)


def last_sound(samples: list[int], level: int = 1000) -> int | None:
    index = next((i for i in range(len(samples) - 1, -1, -1) if abs(samples[i]) > level), None)
    return index
