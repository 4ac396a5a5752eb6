"""What calls use to turn text into audio: a phrase cache in front of the primary
engine, and a fallback engine behind it so a failing TTS service never leaves
the caller in silence.

``speak`` is what replies use: the audio comes to ``on_audio`` as the engine streams it
(``StreamingTTSEngine``), or whole from an engine that does not stream and from the cache.
The primary engine may be a fallback chain (``voiced.tts.chain``); the fallback engine is
the last resort behind it (espeak: ``local`` in ``VOICED_TTS=elevenlabs,google,local``)."""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.language import BIDI_MARKS
from voiced.tts.base import TTSEngine
from voiced.tts.chain import stream_from

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
        served: Callable[[str], None] = lambda engine: None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.cache = cache
        self._on_fallback = on_fallback
        self._served = served  # each sentence synthesized, by the engine that spoke it (not the cache)
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

    def speak(self, text: str, call_id: str, on_audio: Callable[[bytes], None]) -> Deferred[str]:
        """Speak ``text`` into ``on_audio``, chunk by chunk; fires with the name of the engine that
        spoke it (``cache`` for a cached phrase), or fails. Cancelling it stops the request."""
        text = text.translate(_NO_BIDI_MARKS)
        cached = self.cache.get(text)
        if cached is not None:
            on_audio(cached)
            return succeed("cache")
        d = self._speak_with(self.primary, text, call_id, on_audio)
        if self.fallback is not None and self.fallback is not self.primary:
            d.addErrback(self._speak_fallback, text, call_id, on_audio)
        return d

    def _speak_with(self, engine: TTSEngine, text: str, call_id: str,
                    on_audio: Callable[[bytes], None]) -> Deferred[str]:
        def spoken(label: object) -> str:
            # A chain says which of its engines spoke; any other engine is itself.
            name = label if isinstance(label, str) else engine.name
            self._served(name)
            return name

        return stream_from(engine, text, on_audio, call_id).addCallback(spoken)

    def _speak_fallback(self, failure: Failure, text: str, call_id: str,
                        on_audio: Callable[[bytes], None]) -> Deferred[str] | Failure:
        if failure.check(CancelledError):
            return failure
        self._log_fallback(failure, call_id)
        return self._speak_with(self.fallback, text, call_id, on_audio)  # type: ignore[arg-type]

    def _log_fallback(self, failure: Failure, call_id: str) -> None:
        log.warn(
            "TTS_FALLBACK call={call} engine={engine} error={error}: speaking with {fallback}",
            call=call_id,
            engine=self.primary.name,
            error=failure.getErrorMessage() or failure.type.__name__,
            fallback=self.fallback.name,  # type: ignore[union-attr]
        )
        self._on_fallback()

    def _use_fallback(self, failure: Failure, text: str, call_id: str) -> Deferred[bytes]:
        self._log_fallback(failure, call_id)
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
