"""What calls use to turn text into audio: a phrase cache in front of the primary
engine, and a fallback engine behind it so a failing TTS service never leaves
the caller in silence."""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.tts.base import TTSEngine

log = Logger(namespace="voiced.tts")


def _cache_key(text: str) -> str:
    return " ".join(text.split()).lower()


class PhraseCache:
    """Audio of fixed phrases (greeting, prompts), synthesized once at start-up."""

    def __init__(self) -> None:
        self._audio: dict[str, bytes] = {}

    def get(self, text: str) -> bytes | None:
        return self._audio.get(_cache_key(text))

    def put(self, text: str, audio: bytes) -> None:
        self._audio[_cache_key(text)] = audio

    def __len__(self) -> int:
        return len(self._audio)


class Speaker:
    """Process-wide: cache, then the primary engine, then the fallback engine."""

    def __init__(
        self,
        primary: TTSEngine,
        fallback: TTSEngine | None,
        cache: PhraseCache,
        on_fallback: Callable[[], None] = lambda: None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.cache = cache
        self._on_fallback = on_fallback

    def synthesize(self, text: str, call_id: str = "-") -> Deferred[bytes]:
        cached = self.cache.get(text)
        if cached is not None:
            return succeed(cached)
        d = self.primary.synthesize(text)
        if self.fallback is not None and self.fallback is not self.primary:
            d.addErrback(self._use_fallback, text, call_id)
        return d

    def _use_fallback(self, failure: Failure, text: str, call_id: str) -> Deferred[bytes]:
        log.warn(
            "TTS_FALLBACK call={call} engine={engine} error={error}: speaking with {fallback}",
            call=call_id,
            engine=self.primary.name,
            error=failure.getErrorMessage() or failure.type.__name__,
            fallback=self.fallback.name,  # type: ignore[union-attr]
        )
        self._on_fallback()
        return self.fallback.synthesize(text)  # type: ignore[union-attr]

    async def warm(self, phrases: list[str], clock: IReactorTime) -> float:
        """Fill the cache through the primary engine (falling back if needed);
        returns the elapsed milliseconds: the TTS warm-up /health/warmup reports."""
        started = clock.seconds()
        for text in dict.fromkeys(p for p in phrases if p.strip()):
            self.cache.put(text, await self.synthesize(text, call_id="warmup"))
        return (clock.seconds() - started) * 1000
