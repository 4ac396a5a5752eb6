"""Offline text-to-speech: espeak-ng in process, through a small ctypes binding.

The library comes from the ``espeakng-loader`` wheel (libespeak-ng 1.52 and its
data). libespeak-ng keeps global state (one voice, one callback, one output
mode per process), so the library is initialized once per process and every
synthesis holds one module-level lock; each synthesizer re-selects its own voice
and rate under that lock, so several of them (one per language) can coexist.
"""

from __future__ import annotations

import ctypes
import threading

import espeakng_loader
import numpy as np
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from voiced.audio import SAMPLE_RATE, pcm16_to_ulaw, resample_pcm16
from voiced.language import primary
from voiced.lifecycle import note_construction
from voiced.options import default

# espeak_lib.h values (the header does not ship with the wheel).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report a bad data path instead of exit()ing the daemon
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_EE_OK = 0

#: Languages espeak-ng has a voice for that a caller cannot follow on a phone line. Hebrew
#: is written without its vowels, and espeak's rules guess them only for the few words in
#: its dictionary: "לקבוע תור לרופא מחר בבוקר" comes out as the phonemes "lkvvʔ tvr lrvfʔ
#: mχr vvvkr", and pointed text (niqqud) is worse (it spells the points' names out in
#: English). Arabic and Persian, also written without short vowels, came out whole.
POORLY_SERVED_LANGUAGES = frozenset({"he"})

# What espeak-ng accepts as words per minute.
MIN_RATE_WPM = 80
MAX_RATE_WPM = 450

# Keep this much silence around the speech: enough not to clip soft edges,
# little enough that the reply starts at once.
_KEEP_SILENCE_MS = 50
# espeak output is digitally clean; anything above this is speech.
_SILENCE_LEVEL = 64

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_rate = 0
_chunks: list[bytes] = []  # filled by the callback while _lock is held


@_SynthCallback
def _collect(wav: ctypes._Pointer, count: int, _events: int) -> int:  # type: ignore[type-arg]
    if wav and count > 0:
        _chunks.append(ctypes.string_at(wav, count * 2))
    return 0  # 0 = go on synthesizing


class EspeakError(RuntimeError):
    pass


def _library() -> tuple[ctypes.CDLL, int]:
    """Load and initialize libespeak-ng once per process (caller holds _lock)."""
    global _lib, _lib_rate
    if _lib is None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed ({rate}) with data at {data_path.decode()}")
        lib.espeak_SetSynthCallback(_collect)
        _lib, _lib_rate = lib, rate
    return _lib, _lib_rate


def voice_candidates(language: str) -> list[str]:
    """espeak voice names to try for a BCP-47 tag, best first: "en-US" -> en-us, en, then en."""
    tag = language.strip().replace("_", "-").lower()
    bare = tag.split("-")[0]
    out: list[str] = []
    for name in (tag, bare, "en"):
        if name and name not in out:
            out.append(name)
    return out


def language_problem(language: str, voice: str) -> str | None:
    """Why espeak-ng's ``voice`` does not serve ``language`` (a BCP-47 tag) well, or None."""
    code = primary(language.strip().replace("_", "-"))
    if voice.split("-")[0] != code:
        return f"espeak-ng has no voice for {language}: its {voice!r} voice reads the text"
    if code in POORLY_SERVED_LANGUAGES:
        return (f"espeak-ng's {voice!r} voice drops most vowels of {language} (written without them): "
                "not intelligible on a phone line")
    return None


def trim_silence(pcm16: bytes, sample_rate: int, keep_ms: int = _KEEP_SILENCE_MS) -> bytes:
    """Cut leading and trailing silence down to ``keep_ms`` on each side."""
    samples = np.frombuffer(pcm16, dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > _SILENCE_LEVEL)
    if loud.size == 0:
        return b""
    keep = sample_rate * keep_ms // 1000
    start = max(0, int(loud[0]) - keep)
    end = min(samples.size, int(loud[-1]) + 1 + keep)
    return samples[start:end].tobytes()


class EspeakSynthesizer:
    """One espeak-ng voice for one language; process-wide, thread-safe."""

    def __init__(self, language: str = default("language"), rate_wpm: int = 175) -> None:
        note_construction("tts_espeak")
        self.language = language
        self.rate_wpm = min(MAX_RATE_WPM, max(MIN_RATE_WPM, rate_wpm))
        with _lock:
            lib, self.sample_rate = _library()
            self.voice = next(
                (v for v in voice_candidates(language) if lib.espeak_SetVoiceByName(v.encode()) == _EE_OK), ""
            )
        if not self.voice:
            raise EspeakError(f"no espeak-ng voice for {language!r}")
        #: Why a caller would not understand this voice in this language (None: they would).
        self.language_problem = language_problem(language, self.voice)

    def synthesize_pcm16(self, text: str) -> tuple[bytes, int]:
        """Raw PCM16 at espeak's own rate (22050 Hz), silence trimmed."""
        text = text.strip()
        if not text:
            return b"", self.sample_rate
        data = text.encode("utf-8")
        with _lock:
            lib, _ = _library()
            # The voice and rate are global: another synthesizer may have changed them.
            if lib.espeak_SetVoiceByName(self.voice.encode()) != _EE_OK:
                raise EspeakError(f"espeak voice {self.voice!r} vanished")
            lib.espeak_SetParameter(_PARAM_RATE, self.rate_wpm, 0)
            _chunks.clear()
            try:
                err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                pcm = b"".join(_chunks)
            finally:
                _chunks.clear()
        if err != _EE_OK:
            raise EspeakError(f"espeak_Synth failed ({err})")
        return trim_silence(pcm, self.sample_rate), self.sample_rate

    def synthesize_blocking(self, text: str) -> bytes:
        """8 kHz mu-law, no header."""
        pcm, rate = self.synthesize_pcm16(text)
        if not pcm:
            return b""
        return pcm16_to_ulaw(resample_pcm16(pcm, rate, SAMPLE_RATE))


class LocalTTSEngine:
    """The offline TTSEngine: espeak-ng in the service's thread pool."""

    name = "local"

    def __init__(
        self, synthesizer: EspeakSynthesizer, pool: ThreadPool, reactor: IReactorThreads | None = None
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor  # type: ignore[assignment]
        self._synthesizer = synthesizer
        self._pool = pool
        self._reactor = reactor

    def synthesize(self, text: str) -> Deferred[bytes]:
        return deferToThreadPool(self._reactor, self._pool, self._synthesizer.synthesize_blocking, text)
