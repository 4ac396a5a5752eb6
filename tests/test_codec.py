"""A call's audio between its carrier's format and the core's 8 kHz mu-law (voiced.carrier.codec)."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.caller import tone
from voiced.audio import SAMPLE_RATE, pcm16_to_ulaw, ulaw_to_pcm16
from voiced.audio import AudioFormat, UnsupportedAudio
from voiced.carrier.codec import Codec

MULAW_8K, ALAW_8K = AudioFormat("mulaw", 8000), AudioFormat("alaw", 8000)
SLIN_8K, SLIN_16K = AudioFormat("pcm_s16le", 8000), AudioFormat("pcm_s16le", 16000)
L16_16K, SLIN_24K = AudioFormat("pcm_s16be", 16000), AudioFormat("pcm_s16le", 24000)


def level(ulaw: bytes) -> float:
    pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.float64)
    return float(np.sqrt((pcm**2).mean()))


def peak_hz(ulaw: bytes) -> int:
    pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.float64)
    return int(round(np.argmax(np.abs(np.fft.rfft(pcm))) * SAMPLE_RATE / len(pcm)))


class CodecTests(SynchronousTestCase):
    def test_frames_convert_to_the_carriers_framing_and_back(self) -> None:
        speech = tone(1000)
        for fmt, exact in ((MULAW_8K, True), (ALAW_8K, False), (SLIN_8K, True), (SLIN_16K, False),
                           (L16_16K, False), (SLIN_24K, False)):
            to_carrier, from_carrier = Codec(fmt), Codec(fmt)
            sent = [to_carrier.encode(speech[i : i + 160]) for i in range(0, len(speech), 160)]
            self.assertEqual({len(s) for s in sent}, {to_carrier.frame_bytes}, fmt)
            back = b"".join(from_carrier.decode(s) for s in sent)
            self.assertEqual(len(back), len(speech), fmt)
            if exact:
                self.assertEqual(back, speech, fmt)
            else:
                self.assertLess(abs(level(back[800:]) / level(speech[800:]) - 1.0), 0.1, fmt)
                self.assertEqual(peak_hz(back), 440, fmt)

    def test_mulaw_8k_is_not_converted(self) -> None:
        self.assertTrue(Codec(MULAW_8K).passthrough)
        self.assertFalse(Codec(SLIN_8K).passthrough)

    def test_byte_order(self) -> None:
        pcm = np.array([1000, -2000, 3000], dtype="<i2")
        self.assertEqual(Codec(SLIN_8K).decode(pcm.tobytes()), pcm16_to_ulaw(pcm.tobytes()))
        self.assertEqual(Codec(AudioFormat("pcm_s16be", 8000)).decode(pcm.astype(">i2").tobytes()),
                         pcm16_to_ulaw(pcm.tobytes()))

    def test_wideband_audio_above_the_phone_band_does_not_fold_into_it(self) -> None:
        # 6 kHz at 16 kHz would alias to 2 kHz at 8 kHz without the low-pass filter.
        t = np.arange(16000) / 16000
        high = (8000 * np.sin(2 * np.pi * 6000 * t)).astype("<i2").tobytes()
        codec = Codec(SLIN_16K)
        out = b"".join(codec.decode(high[i : i + 640]) for i in range(0, len(high), 640))
        self.assertLess(level(out), 8000 / np.sqrt(2) / 10)  # at least 20 dB down

    def test_formats_voiced_does_not_speak_are_refused(self) -> None:
        for encoding, rate in (("opus", 8000), ("mulaw", 11025), ("pcm_s16le", 44100)):
            with self.assertRaises(UnsupportedAudio):
                AudioFormat(encoding, rate)
        self.assertEqual((Codec(SLIN_24K).frame_bytes, Codec(ALAW_8K).frame_bytes), (960, 160))


def sine(hz: int, rate: int, seconds: float = 1.0, fmt: str = "<i2") -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(fmt).tobytes()


def pcm_level(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt((samples**2).mean()))


def pcm_peak_hz(pcm: bytes, rate: int) -> int:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return int(round(np.argmax(np.abs(np.fft.rfft(samples))) * rate / len(samples)))


class WidebandTests(SynchronousTestCase):
    """decode_wideband: the 8 kHz mu-law the call hears and the 16 kHz PCM its STT gets."""

    def frames(self, codec: Codec, audio: bytes) -> tuple[bytes, bytes]:
        pairs = [codec.decode_wideband(audio[i : i + codec.frame_bytes])
                 for i in range(0, len(audio), codec.frame_bytes)]
        self.assertEqual({len(wide) for _, wide in pairs}, {640})  # every 20 ms frame: 320 samples at 16 kHz
        return b"".join(u for u, _ in pairs), b"".join(w for _, w in pairs)

    def test_16_khz_pcm_reaches_stt_as_it_came_and_the_call_hears_what_decode_gives(self) -> None:
        audio = sine(5000, 16000) + sine(440, 16000)
        ulaw, wide = self.frames(Codec(SLIN_16K), audio)
        self.assertEqual(wide, audio)  # nothing converted: the payload itself
        narrow = Codec(SLIN_16K)
        self.assertEqual(ulaw, b"".join(narrow.decode(audio[i : i + 640]) for i in range(0, len(audio), 640)))

    def test_big_endian_l16_reaches_stt_little_endian(self) -> None:
        _, wide = self.frames(Codec(L16_16K), sine(440, 16000, fmt=">i2"))
        self.assertEqual(wide, sine(440, 16000))

    def test_24_khz_is_decimated_to_16_khz_keeping_the_band_up_to_7_khz(self) -> None:
        # 5 kHz (above the phone band) survives at 16 kHz; 10 kHz (above its 8 kHz Nyquist) does not fold back.
        _, wide = self.frames(Codec(SLIN_24K), sine(5000, 24000))
        self.assertEqual(pcm_peak_hz(wide, 16000), 5000)
        self.assertLess(abs(pcm_level(wide[640:]) / (8000 / np.sqrt(2)) - 1.0), 0.15)
        _, folded = self.frames(Codec(SLIN_24K), sine(10000, 24000))
        self.assertLess(pcm_level(folded), 8000 / np.sqrt(2) / 10)  # at least 20 dB down

    def test_a_narrowband_carrier_has_no_wideband_copy(self) -> None:
        for fmt in (MULAW_8K, SLIN_8K, ALAW_8K):
            with self.assertRaises(ValueError):
                Codec(fmt).decode_wideband(b"\0" * 320)
