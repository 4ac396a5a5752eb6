"""What each call profile's calls borrow, built once at warm-up, and choosing a call's kit.

Mixed into ``VoicedService`` through ``voiced.warmup.WarmUp``. With ``--profiles``, the
warm-up builds, for every profile the file lists, the STT engine, the speaker (its voice
and phrase cache), the agent and the turn settings (its language's phrases) it names.
Parts are shared wherever profiles agree (two profiles in one language and voice share
a speaker; a profile that changes nothing borrows the daemon's own engines), and the
Whisper model, the Google clients and the thread pools stay one per process. A call
then only picks a kit: nothing here is constructed per call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Hashable

from twisted.logger import Logger

from voiced.agent.base import Agent
from voiced.call.model import TurnSettings
from voiced.carrier.base import CallStart
from voiced.config import Settings
from voiced.phrases import PhraseCatalog
from voiced.profiles import LANGUAGE_BOUND, PROFILE_KEYS, Profiles, choose_logged
from voiced.stt.base import STTEngine
from voiced.tts.speaker import PhraseCache, Speaker

log = Logger(namespace="voiced.service")

#: Which TurnSettings phrase comes from which catalog key.
_TURN_PHRASES = {
    "interim_phrase": "interim", "interim_wait_phrase": "interim_wait", "ask_again_phrase": "ask_again",
    "filler_phrase": "filler", "apology_phrase": "apology", "idle_goodbye_phrase": "idle_goodbye",
    "time_limit_phrase": "time_limit", "drain_goodbye_phrase": "drain_goodbye",
}
#: What an agent is built from, beyond the daemon-wide options.
_AGENT_FIELDS = tuple(dict.fromkeys((*PROFILE_KEYS.values(), *LANGUAGE_BOUND)))


@dataclass(frozen=True)
class ProfileKit:
    """What a call of one profile borrows."""

    name: str  # "" without --profiles
    settings: Settings
    stt: STTEngine | None  # None when the agent hears the caller itself (VOICED_AGENT=realtime)
    speaker: Speaker
    agent: Agent
    turn_settings: TurnSettings


def turn_settings_in(base: TurnSettings, phrases: PhraseCatalog) -> TurnSettings:
    """The daemon's turn settings with the phrases of another catalog (a profile's language)."""
    return replace(base, **{field: phrases[key] for field, key in _TURN_PHRASES.items()})


def stt_key(s: Settings) -> Hashable:
    return ("stt", s.stt_engine, s.language, s.google_stt_model)


def speaker_key(s: Settings) -> Hashable:
    return ("tts", s.tts_engine, s.language, s.tts_voice, s.elevenlabs_voice_id, s.cartesia_voice_id,
            s.openai_tts_voice)


def agent_key(s: Settings) -> Hashable:
    return ("agent", *(getattr(s, name) for name in _AGENT_FIELDS))


class ProfileKits:
    """The kits (state on the service: ``profiles``, ``kits``, ``_profile_parts``)."""

    profiles: Profiles | None
    kits: dict[str, ProfileKit]
    _profile_parts: dict[Hashable, Any]

    def profile_settings(self) -> dict[str, Settings]:
        """Every profile's settings (none without --profiles); checked at start-up already."""
        if self.profiles is None:
            return {}
        return {name: self.profiles.settings_for(self.settings, name) for name in self.profiles.profiles}

    def _needs_google(self) -> bool:
        return any("google" in s.stt_engines or "google" in s.tts_engines
                   for s in (self.settings, *self.profile_settings().values()))

    def kit_for(self, start: CallStart) -> ProfileKit:
        """The call's profile (its parameter, the number called, or the default) and what it borrows."""
        if self.profiles is None or not self.kits:
            return ProfileKit("", self.settings, self.stt_engine, self.speaker, self.agent, self.turn_settings)
        choice = choose_logged(self.profiles, start.call_id, start.custom_parameters, start.to_number)
        kit = self.kits[choice.name]
        log.info("CALL_PROFILE call={call} profile={profile} by={by} language={language}", call=start.call_id,
                 profile=kit.name, by=choice.by, language=kit.settings.language)
        return kit

    async def _warm_profiles(self, google: Any) -> None:
        """Build every profile's kit (after the daemon's own engines, which they may share)."""
        if self.profiles is None:
            return
        s = self.settings
        parts = self._profile_parts
        # The daemon's own engines serve every profile that asks for the same.
        parts.update({speaker_key(s): self.speaker, agent_key(s): self.agent})
        if self.stt_engine is not None:
            parts[stt_key(s)] = self.stt_engine
        kits: dict[str, ProfileKit] = {}
        for name, p in self.profile_settings().items():
            catalog = p.phrase_catalog()
            phrases = self.phrases if catalog == self.phrases else catalog
            turn_settings = self.turn_settings if phrases is self.phrases else turn_settings_in(self.turn_settings,
                                                                                                 phrases)
            agent = await self._part(agent_key(p), lambda: self._timed(
                f"agent_{p.agent}_{name}", self.tts_pool, self._build_agent_for, p, phrases))
            stt = None if p.agent == "realtime" else await self._part(stt_key(p),
                                                                       lambda: self._profile_stt(name, p, google))
            speaker = await self._part(speaker_key(p), lambda: self._profile_speaker(p, google))
            todo = [t for t in agent.fixed_phrases() + turn_settings.phrases() if speaker.cache.get(t) is None]
            if todo:
                from voiced.warmup import TTS_RECOVERY_INTERVAL_S, WARMUP_TTS_CONCURRENCY

                await speaker.warm(todo, self.clock, WARMUP_TTS_CONCURRENCY)
                if speaker.on_fallback and speaker is not self.speaker:
                    speaker.recover(self.clock, TTS_RECOVERY_INTERVAL_S)
            kits[name] = ProfileKit(name, p, stt, speaker, agent, turn_settings)
        self.kits = kits
        log.info("PROFILES file={path} default={default} numbers={numbers} {profiles}", path=self.profiles.path,
                 default=self.profiles.default, numbers=len(self.profiles.numbers),
                 profiles=" ".join(f"{k.name}=(language={k.settings.language} stt={k.stt.name if k.stt else 'model'} "
                                   f"tts={k.speaker.primary.name} agent={k.agent.name})" for k in kits.values()))

    async def _part(self, key: Hashable, build: Callable[[], Awaitable[Any]]) -> Any:
        """One profile's engine or agent: built once, kept across warm-up retries, shared by key."""
        if key not in self._profile_parts:
            self._profile_parts[key] = await build()
        return self._profile_parts[key]

    def _build_agent_for(self, settings: Settings, phrases: PhraseCatalog) -> Agent:
        from voiced.agent.factory import build_agent

        return build_agent(settings, phrases, self.http, self.clock)

    async def _profile_stt(self, name: str, p: Settings, google: Any) -> Any:
        from voiced.stt.local import LocalTranscriber

        whisper = self._whisper
        transcriber = LocalTranscriber(whisper, self.whisper_pool, self.clock, language=p.language)
        knows = whisper.knows(p.language)
        if not knows:
            log.warn("PROFILE_LANGUAGE profile={profile} language={language}: the Whisper model {model} cannot "
                     "transcribe it: {what}", profile=name, language=p.language, model=whisper.described,
                     what="every utterance fails (STT_FAILED)" if p.stt_engines == ("local",)
                     else "no fallback transcription when the STT service fails")
        fallback = transcriber if knows else None
        chain = p.stt_engines
        if len(chain) == 1:
            return self._stt_engine_named(chain[0], google, fallback, transcriber, settings=p)
        from voiced.stt.fallback import CircuitBreaker, FallbackSTTEngine

        last = len(chain) - 1
        engines = [(engine, self._stt_engine_named(engine, google, fallback if i == last else None, transcriber,
                                                   retries=i == last, settings=p))
                   for i, engine in enumerate(chain)]
        served = self.metrics.stt_engine_served_total
        return FallbackSTTEngine(engines, CircuitBreaker(self.clock), lambda engine: served.labels(engine=engine).inc())

    async def _profile_speaker(self, p: Settings, google: Any) -> Speaker:
        from voiced.tts.local import EspeakSynthesizer, LocalTTSEngine
        from voiced.warmup import tts_language_problem

        espeak = self._espeak
        if p.language != self.settings.language:
            espeak = await self._part(("espeak", p.language), lambda: self._timed(
                f"tts_espeak_{p.language}", self.tts_pool, EspeakSynthesizer, p.language))
            problem = tts_language_problem(espeak, p)
            if problem:
                log.warn("TTS_LANGUAGE {problem}", problem=problem)
        local_tts = LocalTTSEngine(espeak, self.tts_pool, self.clock)
        speaker = Speaker(self._tts_primary(p, google, local_tts), local_tts, PhraseCache(),
                          self.metrics.tts_fallbacks_total.inc)
        self._closers.append(speaker.stop_recovery)
        return speaker
