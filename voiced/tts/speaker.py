"""What calls use to turn text into audio: a phrase cache in front of the primary
engine, and a fallback engine behind it so a failing TTS service never leaves
the caller in silence."""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.language import BIDI_MARKS
from voiced.tts.base import TTSEngine

_NO_BIDI_MARKS = dict.fromkeys(map(ord, BIDI_MARKS))

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
        #: Cached phrases spoken by the fallback engine, waiting for the primary one to answer.
        self.on_fallback: dict[str, None] = {}
        self._recovery: LoopingCall | None = None

    def synthesize(self, text: str, call_id: str = "-") -> Deferred[bytes]:
        # Bidi marks place text on a screen; a voice has nothing to do with them.
        text = text.translate(_NO_BIDI_MARKS)
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

    async def warm(self, phrases: list[str], clock: IReactorTime, concurrency: int = 4) -> float:
        """Fill the cache through the primary engine, ``concurrency`` phrases at once; a phrase
        the primary engine fails is cached in the fallback voice (and listed in
        ``on_fallback`` for ``recover``). Returns the elapsed milliseconds: the TTS warm-up
        /health/warmup reports."""
        started = clock.seconds()
        texts = list(dict.fromkeys(p for p in phrases if p.strip()))
        errors: list[str] = []
        limit = DeferredSemaphore(max(1, concurrency))
        await gatherResults([limit.run(self._warm_one, text, errors) for text in texts], consumeErrors=True)
        if self.on_fallback:
            log.warn(
                "TTS_WARMUP_FALLBACK phrases_on_fallback={phrases_on_fallback} phrases={phrases} engine={engine} "
                "error={error}: these phrases use the {fallback} voice until {engine} answers again",
                phrases_on_fallback=len(self.on_fallback), phrases=len(texts), engine=self.primary.name,
                error=errors[0], fallback=self.fallback.name if self.fallback else "-",
            )
        return (clock.seconds() - started) * 1000

    async def _warm_one(self, text: str, errors: list[str]) -> None:
        try:
            audio = await self.primary.synthesize(text)
        except Exception as e:
            if self.fallback is None or self.fallback is self.primary:
                raise
            errors.append(str(e) or type(e).__name__)
            self._on_fallback()
            audio = await self.fallback.synthesize(text)
            self.on_fallback[text] = None
        self.cache.put(text, audio)

    def recover(self, clock: IReactorTime, interval_s: float) -> None:
        """Every ``interval_s``, try the primary engine on the phrases on the fallback voice;
        stop once all of them are cached in the primary voice."""
        if self._recovery is None and self.on_fallback:
            self._recovery = LoopingCall(lambda: Deferred.fromCoroutine(self._recover_once()))
            self._recovery.clock = clock
            self._recovery.start(interval_s, now=False)

    def stop_recovery(self) -> None:
        if self._recovery is not None and self._recovery.running:
            self._recovery.stop()
        self._recovery = None

    async def _recover_once(self) -> None:
        for text in list(self.on_fallback):
            try:
                audio = await self.primary.synthesize(text)
            except Exception:
                return  # still failing: the next tick tries again (one attempt, not a flood)
            self.cache.put(text, audio)
            self.on_fallback.pop(text, None)
        log.info("TTS_RECOVERED engine={engine}: every cached phrase is in the {engine} voice again",
                 engine=self.primary.name)
        self.stop_recovery()
