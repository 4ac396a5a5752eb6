"""An STT fallback chain (``VOICED_STT=deepgram,google``): a call's stream that fails moves to the
next engine, and a circuit breaker keeps a failing engine out of every call for a while.

``FallbackSTTEngine`` is process-wide: the chain's engines, each built once, and one
``CircuitBreaker``. A call's ``FallbackSTTStream`` opens a stream on the first engine the
breaker lets in (the last one always serves: there is nothing after it) and relays what it
hears. When that stream gives up (``on_stt_failure``: its retries ran out, a refusal, a
server that did not answer the turn), the breaker counts the failure, the stream is closed,
and a stream on the next engine takes its place: it is told the utterance under way (or
the one whose final the call still waits for) and given its audio, from just before it
began, so the turn goes on with no word lost. Only the last engine's failure reaches the
call. Engines before the last are built without retries and without a Whisper fallback
of their own (``voiced.warmup``): moving on is their retry. Every final with words counts
in ``served`` (``/metrics``: ``voiced_stt_engine_served_total{engine}``).
"""

from __future__ import annotations

from typing import AbstractSet, Callable, Sequence

from twisted.logger import Logger

from voiced.audio import MULAW_8K, AudioFormat
from voiced.breaker import CircuitBreaker
from voiced.stt.audio_log import AudioLog
from voiced.stt.base import STTEngine, STTStream, TranscriptListener, check_format
from voiced.stt.ledger import REPLAY_MAX_MS
from voiced.stt.local import PREROLL_MS

log = Logger(namespace="voiced.stt.fallback")

class FallbackSTTEngine:
    """STTEngine over a chain of engines, in order of preference."""

    streaming = True

    def __init__(self, engines: Sequence[tuple[str, STTEngine]], breaker: CircuitBreaker,
                 served: Callable[[str], None] = lambda engine: None) -> None:
        if len(engines) < 2:
            raise ValueError("a fallback chain needs two engines or more")
        self.engines = list(engines)
        self.breaker = breaker
        self.served = served
        self.name = ",".join(label for label, _ in engines)
        # A call's stream may move to any engine: it can only take what they all take.
        formats: AbstractSet[AudioFormat] = frozenset.intersection(*(frozenset(e.formats) for _, e in engines))
        self.formats = formats

    def open_stream(self, call_id: str, listener: TranscriptListener,
                    audio: AudioFormat = MULAW_8K) -> "FallbackSTTStream":
        check_format(self.name, audio, self.formats)
        return FallbackSTTStream(self, call_id, listener, audio)


class _Relay:
    """The listener one inner stream reports to: what it says reaches the call while it is current."""

    def __init__(self, chain: "FallbackSTTStream", position: int) -> None:
        self.chain = chain
        self.position = position

    def on_transcript(self, text: str, is_final: bool) -> None:
        self.chain._transcript(self, text, is_final)

    def on_stt_failure(self, reason: str, answer_coming: bool = False) -> None:
        self.chain._failed(self, reason, answer_coming)

    def on_fallback_transcript(self, text: str) -> None:
        if self.chain._relay is self:
            self.chain._listener.on_fallback_transcript(text)

    def on_stt_retry(self, error: str) -> None:
        if self.chain._relay is self:
            self.chain._listener.on_stt_retry(error)


class FallbackSTTStream:
    """One call's stream on the chain; every method runs on the reactor thread."""

    def __init__(self, engine: FallbackSTTEngine, call_id: str, listener: TranscriptListener,
                 audio: AudioFormat = MULAW_8K) -> None:
        self._engine = engine
        self._call_id = call_id
        self._listener = listener
        self.format = audio
        self._preroll_bytes = audio.bytes_per_ms() * PREROLL_MS
        self._max_bytes = audio.bytes_per_ms() * REPLAY_MAX_MS
        self._audio = AudioLog()
        self._utterance_at: int | None = None  # where the utterance a final is still due for began
        self._in_speech = False
        self._owed = False  # the call ended a turn and waits for its final
        self._final_at = -1  # how much audio had come when the latest final did
        self._closed = False
        chain = engine.engines
        first = next((i for i, (label, _) in enumerate(chain) if engine.breaker.allows(label)), len(chain) - 1)
        self._relay = _Relay(self, first)
        self._stream: STTStream = chain[first][1].open_stream(call_id, self._relay, audio)
        if first:
            log.info("STT_ENGINE call={call_id} engine={engine} (circuit open before it)", call_id=call_id,
                     engine=self.engine_label)

    @property
    def engine_label(self) -> str:
        return self._engine.engines[self._relay.position][0]

    @property
    def streaming(self) -> bool:
        return self._stream.streaming

    # -- the STTStream contract, relayed ------------------------------------------------------

    def feed(self, audio: bytes) -> None:
        if self._closed:
            return
        kept = self._audio
        kept.append(audio)
        # The utterance a final is due for (at most 30 s of it), else only its pre-roll to be.
        if self._utterance_at is not None:
            kept.forget_before(max(self._utterance_at, kept.end - self._max_bytes))
        else:
            kept.forget_before(kept.end - self._preroll_bytes)
        self._stream.feed(audio)

    def caller_pausing(self, paused: bool) -> None:
        pausing = getattr(self._stream, "caller_pausing", None)
        if pausing is not None and not self._closed:
            pausing(paused)

    def speech_started(self, ms_ago: int = 0) -> None:
        if self._closed:
            return
        if not self._in_speech:
            self._in_speech = True
            if self._utterance_at is None:
                back = self._preroll_bytes + self.format.bytes_per_ms() * ms_ago
                self._utterance_at = max(self._audio.start, self._audio.end - back)
        self._stream.speech_started(ms_ago)

    def flush(self) -> None:
        if self._closed:
            return
        self._in_speech = False
        if self._final_at == self._audio.end:
            # A final came after the last audio (the call ends the turn on it): nothing is due.
            self._utterance_at = None
        else:
            self._owed = True
        self._stream.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stream.close()
        self._audio = AudioLog()

    # -- what the current engine says ---------------------------------------------------------

    def _transcript(self, relay: _Relay, text: str, is_final: bool) -> None:
        if relay is not self._relay or self._closed:
            return
        if is_final:
            self._owed = False
            self._final_at = self._audio.end
            if not self._in_speech:
                self._utterance_at = None  # that utterance has its final: nothing to hand on
            if text.strip():
                self._engine.breaker.succeeded(self.engine_label)
                self._engine.served(self.engine_label)
        self._listener.on_transcript(text, is_final)

    def _failed(self, relay: _Relay, reason: str, answer_coming: bool) -> None:
        if relay is not self._relay or self._closed:
            return
        chain, breaker = self._engine.engines, self._engine.breaker
        label = chain[relay.position][0]
        breaker.failed(label)
        following = [i for i in range(relay.position + 1, len(chain)) if breaker.allows(chain[i][0]) or
                     i == len(chain) - 1]
        if not following:
            self._listener.on_stt_failure(reason, answer_coming)  # the last engine: the call is told
            return
        position = following[0]
        log.warn("STT_FALLBACK call={call_id} from={failed} to={next}: {reason}", call_id=self._call_id,
                 failed=label, next=chain[position][0], reason=reason)
        old = self._stream
        self._relay = _Relay(self, position)
        self._stream = chain[position][1].open_stream(self._call_id, self._relay, self.format)
        old.close()
        self._listener.on_stt_retry(f"{label}->{chain[position][0]}")
        if self._utterance_at is not None:
            # The utterance the failed engine had not finalized, from just before it began.
            self._stream.speech_started()
            self._stream.feed(self._audio.since(self._utterance_at))
            if not self._in_speech and self._owed:
                self._stream.flush()
