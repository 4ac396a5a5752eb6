"""A TTS fallback chain (``VOICED_TTS=elevenlabs,google,local``): each sentence goes to the first
engine the circuit breaker lets in; a request that fails, or brings no audio within the
first-audio timeout, moves THAT sentence to the next engine, never the daemon.

The chain holds the engines before ``local``: espeak is the ``Speaker``'s fallback, the last
resort behind every chain (``voiced.tts.speaker``), so it is not built twice. The same timeout
watches the gaps between chunks: a stream that stalls half-way is a failure too.

A sentence whose engine failed after some of its audio went out is spoken again WHOLE by the
next engine: the caller hears the start of it twice ("I can book you- I can book you for
Tuesday"), as a person who lost their words would say it, rather than a half sentence with no
end, which the agent's history would take as said. Nothing tells where in the text the audio
stopped, so the rest alone cannot be asked for.
"""

from __future__ import annotations

from typing import Callable, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.breaker import CircuitBreaker
from voiced.tts.base import TTSEngine

log = Logger(namespace="voiced.tts")


class TTSTimeout(Exception):
    """No audio from the engine within the first-audio timeout (or a stall as long)."""


class TTSChainFailed(Exception):
    """Every engine of the chain failed the sentence (or their circuits are open)."""


def stream_from(engine: TTSEngine, text: str, on_audio: Callable[[bytes], None], call_id: str) -> Deferred[None]:
    """``engine.stream`` where it has one; else its whole synthesis, as one chunk."""
    # A TTSEngine with a ``stream`` is a StreamingTTSEngine: asked directly, as the isinstance
    # of a runtime Protocol costs some 10 µs, on every sentence.
    stream: Callable[[str, Callable[[bytes], None], str], Deferred[None]] | None = getattr(engine, "stream", None)
    if stream is not None:
        return stream(text, on_audio, call_id)
    return engine.synthesize(text).addCallback(lambda audio: on_audio(audio) if audio else None)


class _Watched:
    """One engine's request for one sentence, failed with TTSTimeout if audio is late."""

    def __init__(self, clock: IReactorTime, timeout_s: float, engine: TTSEngine, text: str,
                 on_audio: Callable[[bytes], None], call_id: str) -> None:
        self._clock = clock
        self._timeout_s = timeout_s
        self._on_audio = on_audio
        self._timer: IDelayedCall | None = None
        self._timed_out = False
        self.done: Deferred[None] = Deferred(lambda _: self._request.cancel())
        self._arm()
        self._request = stream_from(engine, text, self._chunk, call_id)
        self._request.addBoth(self._ended)

    def _arm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._clock.callLater(self._timeout_s, self._expired)

    def _chunk(self, audio: bytes) -> None:
        if self.done.called:
            return
        self._arm()
        self._on_audio(audio)

    def _expired(self) -> None:
        self._timer = None
        self._timed_out = True
        self._request.cancel()

    def _ended(self, result: object) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.done.called:
            return  # cancelled from outside: done has already failed
        if self._timed_out:
            self.done.errback(TTSTimeout(f"no audio within {self._timeout_s * 1000:.0f} ms"))
        elif isinstance(result, Failure):
            self.done.errback(result)
        else:
            self.done.callback(None)


class TTSChain:
    """``StreamingTTSEngine`` over engines in order of preference; ``stream`` fires with the
    label of the engine that spoke the sentence."""

    def __init__(self, engines: Sequence[tuple[str, TTSEngine]], breaker: CircuitBreaker, clock: IReactorTime,
                 first_audio_timeout_s: float) -> None:
        if not engines:
            raise ValueError("a TTS chain needs an engine")
        self.engines = list(engines)
        self.breaker = breaker
        self._clock = clock
        self._timeout_s = first_audio_timeout_s
        self.name = ",".join(label for label, _ in engines)

    def synthesize(self, text: str) -> Deferred[bytes]:
        chunks: list[bytes] = []
        return self.stream(text, chunks.append).addCallback(lambda _: b"".join(chunks))

    def stream(self, text: str, on_audio: Callable[[bytes], None], call_id: str = "-") -> Deferred[str]:
        return Deferred.fromCoroutine(self._speak(text, on_audio, call_id))

    async def _speak(self, text: str, on_audio: Callable[[bytes], None], call_id: str) -> str:
        allowed = [(label, engine) for label, engine in self.engines if self.breaker.allows(label)]
        if not allowed:
            raise TTSChainFailed(f"every engine of {self.name} is out (circuit open)")
        error = ""
        for i, (label, engine) in enumerate(allowed):
            try:
                await _Watched(self._clock, self._timeout_s, engine, text, on_audio, call_id).done
            except CancelledError:
                raise
            except Exception as e:
                self.breaker.failed(label)
                error = str(e) or type(e).__name__
                if i + 1 < len(allowed):  # after the last link, the Speaker's fallback says so
                    log.warn("TTS_FALLBACK call={call} engine={engine} error={error}: speaking with {next}",
                             call=call_id, engine=label, error=error, next=allowed[i + 1][0])
                continue
            self.breaker.succeeded(label)
            return label
        raise TTSChainFailed(error if len(allowed) == 1 else f"{allowed[-1][0]}: {error}")
