"""The warm-up: how ``VoicedService`` builds its engines once twistd has started it.

Mixed into ``VoicedService`` (as ``voiced/health.py`` is): started by ``startService``,
it loads Whisper and espeak, builds the agent, opens the journal, connects to Google
and fills the phrase cache, retrying what a retry may cure, then sets ``ready``.
What it builds it stores on the service, which owns it and releases it in
``stopService``; this mixin keeps no state of its own, and nothing here runs per call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from voiced.agent.base import Agent
from voiced.config import ConfigError, Settings
from voiced.interpreter import freeze_start_up
from voiced.profile_kits import ProfileKits
from voiced.retry import Backoff, retry
from voiced.tts.speaker import PhraseCache, Speaker

# The service's namespace: the warm-up's lines read as the service's, as before the split.
log = Logger(namespace="voiced.service")

# Warm-up retries: what a retry can cure (the speech service briefly unreachable) is
# retried for as long as the process lives; /health turns unhealthy after
# VOICED_WARMUP_TIMEOUT_S so that a supervisor restarts a daemon that never gets ready.
WARMUP_RETRY = Backoff(1.0, 30.0, attempts=1_000_000, jitter=0.1)
GOOGLE_CONNECT_TIMEOUT_S = 5.0
WARMUP_TTS_CONCURRENCY = 4  # phrases synthesized at once at warm-up
TTS_RECOVERY_INTERVAL_S = 30.0  # how often phrases on the fallback voice try the primary engine again


def whisper_language_problem(whisper: Any, settings: Settings) -> str | None:
    """The start-up line for a Whisper model that cannot transcribe the call's language:
    which model, which language, what callers get, and the fix. None when it can."""
    if whisper.serves_language:
        return None
    if whisper.is_multilingual:
        why = f"Whisper has no language {whisper.language!r}"
        models = ""
    else:
        why = "it is English-only"
        # The smaller multilingual models are weak at Hebrew (base made nonsense of it here).
        names = ("ivrit-ai/whisper-large-v3-turbo-ct2, a Hebrew fine-tune, or large-v3-turbo"
                 if whisper.language == "he" else "small, large-v3-turbo")
        models = f"a multilingual model in VOICED_WHISPER_MODEL ({names})"
    if settings.stt_engines[-1] in ("google", "deepgram"):
        what = (f"no fallback transcription when {settings.stt_engines[-1].title()} STT fails: the caller hears "
                "the interim phrase and is asked again")
        fix = models or "none: no Whisper model knows it"
    else:
        what = ("with VOICED_STT=local every utterance fails (STT_FAILED) and the caller hears the interim "
                "phrase, asked to say it again")
        fix = f"{models} or VOICED_STT=google" if models else "VOICED_STT=google"
    return (f"model={whisper.described} cannot transcribe language={settings.language} ({why}): {what}; "
            f"fix: {fix}")


def tts_language_problem(espeak: Any, settings: Settings) -> str | None:
    """The start-up line for an espeak-ng voice a caller would not understand, or None."""
    if espeak.language_problem is None:
        return None
    if settings.tts_engines != ("local",):
        what = f"it is only the fallback voice, heard when {_tts_names(settings)} fails"
    else:
        what = "every reply is spoken with it (VOICED_TTS=local); fix: VOICED_TTS=google"
    return f"language={settings.language}: {espeak.language_problem}; {what}"


def _tts_names(settings: Settings) -> str:
    names = {"google": "Google TTS", "elevenlabs": "ElevenLabs", "cartesia": "Cartesia", "openai": "the speech server"}
    return " and ".join(names[name] for name in settings.tts_engines if name != "local")


class WarmUp(ProfileKits):
    def _start_warm_up(self, policy: Backoff = WARMUP_RETRY) -> Deferred[None]:
        """Warm up, retrying what a retry may cure; a ConfigError is final at once."""
        warming = retry(self.clock, lambda attempt: Deferred.fromCoroutine(self._warm_up()), policy,
                        is_retryable=lambda failure: not failure.check(ConfigError), on_retry=self._warm_up_retry)
        warming.addErrback(self._warm_up_failed)
        return warming

    async def _warm_up(self) -> None:
        """Build the engines and fill the phrase cache. Retried on a transient failure,
        so each step keeps what an earlier attempt built."""
        s = self.settings
        from voiced.stt.local import WhisperTranscriber
        from voiced.tts.local import EspeakSynthesizer, LocalTTSEngine

        # Whisper is the local STT and, with Google, the fallback: load it either way, unless no
        # call will transcribe (VOICED_AGENT=realtime hears the caller itself, and so does every profile).
        if self._whisper is None and self._needs_stt():
            self._whisper = await self._timed(
                "stt_whisper", self.whisper_pool, WhisperTranscriber, s.whisper_model, 1, s.whisper_workers,
                s.language,
            )
            problem = whisper_language_problem(self._whisper, s)
            if problem:
                log.warn("WHISPER_LANGUAGE {problem}", problem=problem)
        whisper = self._whisper
        if self._espeak is None:
            self._espeak = await self._timed("tts_espeak", self.tts_pool, EspeakSynthesizer, s.language)
            problem = tts_language_problem(self._espeak, s)
            if problem:
                log.warn("TTS_LANGUAGE {problem}", problem=problem)
        local_tts = LocalTTSEngine(self._espeak, self.tts_pool, self.clock)
        if self.agent is None:
            self.agent = await self._timed(f"agent_{s.agent}", self.tts_pool, self._build_agent)
        if self.journal is not None and not self.journal.is_open:
            await self._open_journal()
        await self._warm_turns()

        google = self._google
        if self._needs_google():  # the daemon's engines, or a profile's (--profiles)
            if google is None:
                from voiced.google.clients import GoogleClients

                google = self._google = GoogleClients(s, self.clock)
                self._closers.append(google.stop)
            await self._timed("google_clients", self.tts_pool, google.start, self.stt_pool)
            # The one failure a retry cures at start-up: the speech service out of reach.
            await self._timed("google_connect", self.tts_pool, google.wait_connected, GOOGLE_CONNECT_TIMEOUT_S,
                              any("google" in p.stt_engines for p in (s, *self.profile_settings().values())))

        if s.agent == "realtime":
            # The model hears the caller's audio itself (voiced.call.speech_to_speech.ModelEar, per call):
            # the daemon's calls have no STT engine to borrow.
            self.stt_engine = None
        else:
            self._build_stt(s, google, whisper)

        primary = self._tts_primary(s, google, local_tts)
        spoken = self.metrics.tts_engine_served_total
        self.speaker = Speaker(primary, local_tts, PhraseCache(), self.metrics.tts_fallbacks_total.inc,
                               lambda engine: spoken.labels(engine=engine).inc())
        phrases = self.agent.fixed_phrases() + self.turn_settings.phrases()
        self.tts_warmup_ms = round(await self.speaker.warm(phrases, self.clock, WARMUP_TTS_CONCURRENCY))
        await self._warm_profiles(google)
        freeze_start_up()  # (voiced.interpreter) full collections then walk the calls' objects only
        self.ready = not self.stopping
        self.warmup_error = None
        log.info("READY stt={stt} tts={tts} agent={agent} tts_warmup_ms={tts_warmup_ms} phrases={phrases} "
                 "phrases_on_fallback={phrases_on_fallback} engines_ms={engines_ms}",
                 stt=self.stt_engine.name if self.stt_engine else "model",
                 tts=primary.name, agent=self.agent.name, tts_warmup_ms=self.tts_warmup_ms,
                 phrases=len(self.speaker.cache), phrases_on_fallback=len(self.speaker.on_fallback),
                 engines_ms=self.engine_warmup_ms)
        if self.speaker.on_fallback:
            self.speaker.recover(self.clock, TTS_RECOVERY_INTERVAL_S)
        if self.campaigns is not None and self.ready:
            # The journal is open now: every unfinished campaign is taken up again.
            self.campaigns.start().addErrback(lambda f: log.failure("Resuming the campaigns", f))

    def _needs_stt(self) -> bool:
        """Some call transcribes: the daemon's agent, or a profile's, is not a speech-to-speech model."""
        return any(p.agent != "realtime" for p in (self.settings, *self.profile_settings().values()))

    def _build_stt(self, s: Settings, google: Any, whisper: Any) -> None:
        """The daemon's STT engine (VOICED_STT), or its fallback chain."""
        from voiced.stt.local import LocalTranscriber

        transcriber = LocalTranscriber(whisper, self.whisper_pool, self.clock)
        # A fallback that answers in the wrong language is worse than none.
        fallback = transcriber if whisper.serves_language else None
        chain = s.stt_engines
        if len(chain) == 1:
            self.stt_engine = self._stt_engine_named(chain[0], google, fallback, transcriber)
        elif getattr(self.stt_engine, "name", None) != s.stt_engine:
            from voiced.breaker import CircuitBreaker
            from voiced.stt.fallback import FallbackSTTEngine

            # Engines before the last move a failed stream on at once, to the next: no retries,
            # no Whisper of their own. The last one keeps both (issue 22).
            engines = []
            for i, name in enumerate(chain):
                last = i == len(chain) - 1
                engines.append((name, self._stt_engine_named(name, google, fallback if last else None, transcriber,
                                                             retries=last)))
            served = self.metrics.stt_engine_served_total
            self.stt_engine = FallbackSTTEngine(engines, CircuitBreaker(self.clock),
                                                lambda engine: served.labels(engine=engine).inc())

    def _tts_primary(self, s: Settings, google: Any, local_tts: Any) -> Any:
        """The TTS engine VOICED_TTS (or a profile's tts) names, or its chain (issue 22). espeak is not
        a link of a chain: it is the Speaker's fallback, the last resort behind every engine, so
        ``local`` in a chain is implied."""
        links = [name for name in s.tts_engines if name != "local"]
        if not links:
            return local_tts
        if links == ["google"]:
            from voiced.google.tts import GoogleTTSEngine

            return GoogleTTSEngine(google, s, self.clock)  # as before chains: Google has its own timeouts
        built = getattr(self.speaker, "primary", None)
        if s is self.settings and built is not None and built.name == ",".join(links):
            return built  # a warm-up retry keeps the engines (and their breaker) it built
        from voiced.breaker import CircuitBreaker
        from voiced.tts.chain import TTSChain

        engines = [(name, self._tts_engine_named(name, google, s)) for name in links]
        return TTSChain(engines, CircuitBreaker(self.clock, kind="TTS"), self.clock,
                        s.tts_first_audio_timeout_ms / 1000)

    def _tts_engine_named(self, name: str, google: Any, s: Settings) -> Any:
        """One link of a TTS chain; the vendors share the service's HTTP pool."""
        if name == "google":
            from voiced.google.tts import GoogleTTSEngine

            return GoogleTTSEngine(google, s, self.clock)
        if name == "elevenlabs":
            from voiced.tts.elevenlabs import ElevenLabsTTSEngine

            return ElevenLabsTTSEngine(self.http, s, self.clock)
        if name == "cartesia":
            from voiced.tts.cartesia import CartesiaTTSEngine

            return CartesiaTTSEngine(self.http, s, self.clock)
        from voiced.tts.openai_speech import OpenAISpeechEngine

        return OpenAISpeechEngine(self.http, s, self.clock)

    def _stt_engine_named(self, name: str, google: Any, fallback: Any, transcriber: Any, retries: bool = True,
                          settings: Settings | None = None) -> Any:
        """One STT engine of VOICED_STT, or of a profile's ``settings`` (alone, or a link of its fallback chain)."""
        s = settings or self.settings
        backoff = None if retries else Backoff(0, 0, 0)
        if name == "google":
            from voiced.google.stt import GoogleSTTEngine

            return GoogleSTTEngine(google, s, self.clock, fallback=fallback, rollover_s=s.stt_rollover_s,
                                   backoff=backoff)
        if name == "deepgram":
            from voiced.stt.deepgram import DeepgramSTTEngine

            # Built once per process (its client factories and TLS context), even across warm-up retries.
            built = self.stt_engine if isinstance(self.stt_engine, DeepgramSTTEngine) and retries and \
                s is self.settings else None
            return built or DeepgramSTTEngine(s, self.clock, fallback=fallback, backoff=backoff)
        from voiced.stt.local import LocalSTTEngine

        return LocalSTTEngine(transcriber)

    async def _timed(self, name: str, pool: ThreadPool, fn: Any, *args: Any) -> Any:
        """Build a process-wide object in a worker thread (model loads block), timing it."""
        started = self.clock.seconds()
        result = await deferToThreadPool(self.clock, pool, fn, *args)
        self.engine_warmup_ms[name] = round((self.clock.seconds() - started) * 1000)
        return result

    async def _warm_turns(self) -> None:
        """The turn-taking models (a model-based VAD, the semantic turn model), once."""
        s = self.settings
        if s.vad == "silero" and self.voice_activity.name != "silero":
            from voiced.turns.silero import SileroVoiceActivity

            self.voice_activity = await self._timed("vad_silero", self.vad_pool, SileroVoiceActivity,
                                                    self.clock, self.vad_pool, s.vad_threshold)
            self._closers.append(self.voice_activity.stop)
        if s.turn_model == "smart-turn" and self.turn_detection.model is None:
            from voiced.turns.models import SmartTurnModel
            from voiced.turns.smart_turn import SmartTurnModelError

            try:
                model = await self._timed("turn_smart_turn", self.turn_pool, SmartTurnModel.load, self.clock,
                                          self.turn_pool, s.turn_model_path)
            except SmartTurnModelError as e:
                raise ConfigError(f"VOICED_TURN_MODEL=smart-turn: {e}") from None
            self._closers.append(model.stop)
            self.turn_detection = replace(self.turn_detection, model=model)

    def _build_agent(self) -> Agent:
        from voiced.agent.factory import build_agent

        return build_agent(self.settings, self.phrases, self.http, self.clock)

    async def _open_journal(self) -> None:
        from voiced.journal.store import JournalError

        try:
            await self.journal.open()
        except JournalError as e:  # no retry mends a newer schema or a file that is not a database
            raise ConfigError(f"VOICED_JOURNAL: {e}") from None
        log.info("JOURNAL_OPEN path={path} calls={calls} delivery={delivery}", path=self.settings.journal,
                 calls=await self.journal.count(), delivery=self.settings.call_webhook_url or "off")
        if self.outbox is not None:
            self.outbox.start()  # first of all, what an earlier run left undelivered

    def _warm_up_retry(self, attempt: int, delay: float, failure: Any) -> None:
        self.warmup_error = failure.getErrorMessage() or failure.type.__name__
        log.warn("WARMUP_RETRY attempt={attempt} delay_s={delay_s} error={error}: not accepting calls yet",
                 attempt=attempt, delay_s=round(delay, 1), error=self.warmup_error)

    def _warm_up_failed(self, failure: Any) -> None:
        if failure.check(CancelledError):
            return  # stopped while warming up
        self.warmup_error = failure.getErrorMessage() or failure.type.__name__
        self.warmup_fatal = True
        if failure.check(ConfigError):  # the reason is the whole story: no traceback
            log.critical("Warm-up failed: {error}: voiced is not accepting calls", error=self.warmup_error)
        else:
            log.failure("Warm-up failed: voiced is not accepting calls", failure)
