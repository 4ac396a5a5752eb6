"""Audio formats at the telephony edge: what a carrier may stream (``AudioFormat``), 8 kHz
mu-law frames, PCM16, resampling, WAV.

The call core's per-frame path stays at 8 kHz mu-law (VAD, end of utterance, TTS and
its phrase cache); a wideband carrier's call also feeds STT its 16 kHz PCM
(``voiced.carrier.codec``); anything else that needs another rate resamples once per
utterance with soxr.
"""

from __future__ import annotations

import struct
import warnings
import wave
from dataclasses import dataclass

with warnings.catch_warnings():
    # audioop is deprecated in 3.11/3.12 and provided by audioop-lts on 3.13+.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

import numpy as np
import soxr

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # mu-law: one byte per sample
ULAW_SILENCE = b"\xff"


#: Encodings a carrier may stream (16-bit PCM in either byte order: RTP's L16 is big-endian,
#: Asterisk's slin and most WebSocket carriers' raw PCM little-endian).
ENCODINGS = ("mulaw", "alaw", "pcm_s16le", "pcm_s16be")
SAMPLE_RATES = (8000, 16000, 24000)


class UnsupportedAudio(ValueError):
    """An audio format voiced does not speak: a carrier's parser closes the stream with
    ``CLOSE_BAD_MEDIA_FORMAT`` (4001) before any call exists."""


@dataclass(frozen=True)
class AudioFormat:
    encoding: str  # one of ENCODINGS
    sample_rate: int  # one of SAMPLE_RATES

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS or self.sample_rate not in SAMPLE_RATES:
            raise UnsupportedAudio(f"unsupported audio format {self}")

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.encoding in ("mulaw", "alaw") else 2

    def bytes_per_ms(self) -> int:
        """Bytes of one millisecond; every supported rate is a whole number of samples per ms."""
        return self.sample_rate // 1000 * self.bytes_per_sample

    def __str__(self) -> str:
        return f"{self.encoding}/{self.sample_rate}"


MULAW_8K = AudioFormat("mulaw", 8000)



def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    return audioop.ulaw2lin(ulaw, 2)


def pcm16_to_ulaw(pcm16: bytes) -> bytes:
    return audioop.lin2ulaw(pcm16, 2)


def silence_ulaw(ms: int) -> bytes:
    return ULAW_SILENCE * (SAMPLE_RATE * ms // 1000)


def duration_ms(ulaw: bytes) -> int:
    return len(ulaw) * 1000 // SAMPLE_RATE


def resample_pcm16(pcm16: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample a whole utterance (not a stream) with soxr's anti-aliasing filter."""
    if from_rate == to_rate or not pcm16:
        return pcm16
    samples = np.frombuffer(pcm16, dtype=np.int16)
    out = soxr.resample(samples, from_rate, to_rate)
    return np.clip(out, -32768, 32767).astype(np.int16).tobytes()


def ulaw_to_float32(ulaw: bytes, to_rate: int = 16000) -> np.ndarray:
    """8 kHz mu-law -> float32 in [-1, 1] at ``to_rate`` (what Whisper takes)."""
    pcm = resample_pcm16(ulaw_to_pcm16(ulaw), SAMPLE_RATE, to_rate)
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def frames(ulaw: bytes, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    """Split audio into fixed frames, padding the last one with silence."""
    out = [ulaw[i : i + frame_bytes] for i in range(0, len(ulaw), frame_bytes)]
    if out and len(out[-1]) < frame_bytes:
        out[-1] = out[-1] + ULAW_SILENCE * (frame_bytes - len(out[-1]))
    return out


@dataclass(frozen=True)
class WavAudio:
    format_tag: int  # 1 = PCM, 7 = mu-law
    sample_rate: int
    channels: int
    bits_per_sample: int
    data: bytes


WAVE_FORMAT_PCM = 1
WAVE_FORMAT_MULAW = 7


def parse_wav(blob: bytes) -> WavAudio:
    """Parse a RIFF/WAVE blob by walking its chunks (the header is not always 44 bytes)."""
    if len(blob) < 12 or blob[0:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE blob")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        (size,) = struct.unpack("<I", blob[pos + 4 : pos + 8])
        body = blob[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise ValueError("WAVE data chunk before fmt chunk")
            tag, channels, rate, bits = fmt
            # Some encoders write 0 or 0xFFFFFFFF as a streaming size: take the rest.
            data = blob[pos + 8 :] if size in (0, 0xFFFFFFFF) else body
            return WavAudio(tag, rate, channels, bits, data)
        pos += 8 + size + (size & 1)
    raise ValueError("WAVE blob has no data chunk")


def wav_bytes(data: bytes, sample_rate: int, format_tag: int, bits: int, channels: int = 1) -> bytes:
    """Build a WAV blob; mu-law needs a hand-made header (the wave module writes PCM only)."""
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, channels, sample_rate, sample_rate * block_align, block_align, bits)
    if format_tag != WAVE_FORMAT_PCM:
        fmt += struct.pack("<H", 0)  # cbSize, required for non-PCM formats
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if format_tag != WAVE_FORMAT_PCM:
        chunks += b"fact" + struct.pack("<II", 4, len(data) // block_align)
    chunks += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def read_wav_as_ulaw(path: str) -> bytes:
    """Read any PCM16/mu-law WAV file and return 8 kHz mono mu-law."""
    with open(path, "rb") as f:
        wav = parse_wav(f.read())
    if wav.format_tag == WAVE_FORMAT_MULAW:
        pcm = ulaw_to_pcm16(wav.data)
    elif wav.format_tag == WAVE_FORMAT_PCM and wav.bits_per_sample == 16:
        pcm = wav.data
    else:
        raise ValueError(f"{path}: unsupported WAV encoding (tag {wav.format_tag}, {wav.bits_per_sample} bits)")
    if wav.channels == 2:
        pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
    elif wav.channels != 1:
        raise ValueError(f"{path}: {wav.channels} channels not supported")
    return pcm16_to_ulaw(resample_pcm16(pcm, wav.sample_rate, SAMPLE_RATE))


def write_ulaw_as_wav(path: str, ulaw: bytes) -> None:
    """Write 8 kHz mu-law as a PCM16 WAV file that every player opens."""
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(ulaw_to_pcm16(ulaw))
