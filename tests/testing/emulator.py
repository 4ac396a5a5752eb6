"""The Google emulator spoken to with the real google-cloud-speech client (imported where used, so a
module that does not need it does not load it): an espeak utterance, request builders, and StatsWatch."""

from __future__ import annotations

import functools
import os
import threading
from typing import Any, Callable, Iterator

from voiced.audio import silence_ulaw


PHRASE = "what time do you open"
CHUNK = 800  # 100 ms of 8 kHz mu-law
TIMEOUT = 15.0


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout


@functools.cache
def utterance() -> bytes:
    """Espeak saying PHRASE with silence around it, 8 kHz mu-law (~2.2 s)."""
    from voiced.tts.local import EspeakSynthesizer

    return silence_ulaw(300) + EspeakSynthesizer("en-US").synthesize_blocking(PHRASE) + silence_ulaw(600)


def streaming_config(
    language: str = "en-US", model: str = "phone_call", encoding: str = "MULAW", rate: int = 8000, **kw: bool
) -> Any:
    from google.cloud import speech

    config = speech.RecognitionConfig(encoding=encoding, sample_rate_hertz=rate, language_code=language, model=model)
    return speech.StreamingRecognitionConfig(config=config, **kw)


def audio_requests(audio: bytes, chunk: int = CHUNK) -> Iterator[Any]:
    from google.cloud import speech

    for i in range(0, len(audio), chunk):
        yield speech.StreamingRecognizeRequest(audio_content=audio[i : i + chunk])


def finals(responses: list[Any]) -> list[str]:
    return [r.results[0].alternatives[0].transcript for r in responses if r.results and r.results[0].is_final]


def interims(responses: list[Any]) -> list[str]:
    return [r.results[0].alternatives[0].transcript for r in responses if r.results and not r.results[0].is_final]


class StatsWatch:
    """Waits for the emulator's counters to reach a state, woken by each change (the server
    updates them from its own threads), instead of polling on a timer."""

    def __init__(self, test: Any, stats: Any) -> None:
        self._stats = stats
        self._changed = threading.Condition()
        add = stats.add

        def add_and_notify(**deltas: int) -> None:
            add(**deltas)
            with self._changed:
                self._changed.notify_all()

        test.patch(stats, "add", add_and_notify)

    def until(self, predicate: Callable[[Any], bool], timeout: float = TIMEOUT) -> None:
        """Return once ``predicate(stats)`` holds; fail with the counters if it never does."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self._stats), timeout):
                raise AssertionError(f"the emulator's counters never got there: {self._stats.snapshot()}")
