"""Any OpenAI-compatible ``POST {base}/audio/speech`` (OpenAI itself, Kokoro-FastAPI and the other
local servers that speak the API). None of them sends mu-law: ``pcm`` is headerless 24 kHz
16-bit little-endian mono, ``wav`` the same behind a header; either is resampled to 8 kHz and
mu-law encoded as it streams, with a resampler that keeps its state across chunks (a sample
split between two chunks, the filter's history) so the joins make no clicks."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import soxr
from twisted.internet.interfaces import IReactorTime

from voiced.audio import SAMPLE_RATE, pcm16_to_ulaw
from voiced.config import Settings
from voiced.lifecycle import note_construction
from voiced.tts.http_stream import Decoder, HTTPStreamingEngine, VendorRequest

#: What ``response_format: pcm`` is, per OpenAI's API reference.
PCM_RATE = 24000
_WAV_HEADER_LIMIT = 4096  # a header longer than this is not a WAV voiced can stream


class PcmToUlaw:
    """16-bit little-endian mono PCM at ``rate`` in, 8 kHz mu-law out, chunk by chunk."""

    def __init__(self, rate: int = PCM_RATE) -> None:
        self._odd = b""
        self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="int16") if rate != SAMPLE_RATE else None

    def __call__(self, data: bytes) -> bytes:
        data = self._odd + data
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        if not whole:
            return b""
        pcm = data[:whole]
        if self._resampler is not None:
            pcm = self._resampler.resample_chunk(np.frombuffer(pcm, dtype="<i2")).astype("<i2").tobytes()
        return pcm16_to_ulaw(pcm) if pcm else b""

    def finish(self) -> bytes:
        """The resampler's tail (its filter delays the last few milliseconds)."""
        if self._resampler is None:
            return b""
        tail = self._resampler.resample_chunk(np.zeros(0, dtype="<i2"), last=True).astype("<i2").tobytes()
        return pcm16_to_ulaw(tail) if tail else b""


class WavToUlaw:
    """A streamed WAV (RIFF header, then PCM16 mono): the header is read for the rate, then PCM."""

    def __init__(self) -> None:
        self._head = b""
        self._pcm: PcmToUlaw | None = None

    def __call__(self, data: bytes) -> bytes:
        if self._pcm is not None:
            return self._pcm(data)
        self._head += data
        start = _wav_data_start(self._head)
        if start is None:
            if len(self._head) > _WAV_HEADER_LIMIT:
                raise ValueError("the speech server's WAV has no data chunk in its first 4 KiB")
            return b""
        rate, data_at = start
        self._pcm = PcmToUlaw(rate)
        rest, self._head = self._head[data_at:], b""
        return self._pcm(rest)

    def finish(self) -> bytes:
        return self._pcm.finish() if self._pcm is not None else b""


def _wav_data_start(head: bytes) -> tuple[int, int] | None:
    """(sample rate, offset of the samples) once ``head`` holds the header, else None."""
    if len(head) < 12:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("the speech server's answer is not a WAV file")
    at, rate = 12, None
    while at + 8 <= len(head):
        chunk, size = head[at : at + 4], struct.unpack("<I", head[at + 4 : at + 8])[0]
        if chunk == b"data":
            return (rate, at + 8) if rate else None
        if chunk == b"fmt ":
            if at + 24 > len(head):
                return None
            fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", head[at + 8 : at + 24])
            if fmt != 1 or channels != 1 or bits != 16:
                raise ValueError(f"the speech server's WAV is format {fmt} x{channels} {bits}-bit, not PCM16 mono")
        at += 8 + size + size % 2
    return None


class OpenAISpeechEngine(HTTPStreamingEngine):
    name = "openai"

    def __init__(self, http: Any, settings: Settings, clock: IReactorTime, **kwargs: Any) -> None:
        super().__init__(http, clock, **kwargs)
        base = (settings.openai_tts_base_url or settings.openai_base_url).rstrip("/")
        self._url = base + "/audio/speech"
        self._headers = {"Content-Type": "application/json"}
        if settings.openai_api_key:
            self._headers["Authorization"] = f"Bearer {settings.openai_api_key}"
        self._model = settings.openai_tts_model
        self._voice = settings.openai_tts_voice
        self._format = settings.openai_tts_format
        note_construction("tts_openai")

    def request_for(self, text: str) -> VendorRequest:
        body = {"model": self._model, "voice": self._voice, "input": text, "response_format": self._format}
        return VendorRequest(self._url, self._headers, body)

    def decoder(self) -> Decoder:
        return PcmToUlaw() if self._format == "pcm" else WavToUlaw()
