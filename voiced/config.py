"""One settings object, from command-line options and their environment twins.

Every option ``--some-name`` has the twin ``VOICED_SOME_NAME``; the command line
wins over the environment, which wins over the default. The options themselves (names,
parsers, defaults, help) are the table in ``voiced.options``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

from voiced.options import BY_NAME, DEFAULT_LISTEN, OPTIONS, PHRASE_OPTIONS

if TYPE_CHECKING:
    from voiced.phrases import PhraseCatalog

#: The default max_calls per worker process (each has one reactor, one GIL), counting at most one
#: worker per CPU core: bench/scale.py on 2 cores (the emulator and the callers on them too)
#: measured one worker p99 21 ms at 300 calls and 462 ms at 500 (one core full); two workers
#: p99 47-170 ms at 500. 200 leaves room for a slower machine; README says how to size it.
CALLS_PER_WORKER = 200

#: Each carrier's signing secret (a Settings field): with it set, that carrier's unsigned
#: requests are refused; without it, the carrier takes calls only on loopback-only listeners.
CARRIER_SECRETS = {
    "twilio": "twilio_auth_token",
    "telnyx": "telnyx_public_key",
    "plivo": "plivo_auth_token",
    "vonage": "vonage_signature_secret",
    "exotel": "exotel_secret",
    "asterisk": "asterisk_secret",
    "audiosocket": "audiosocket_secret",
}


class ConfigError(ValueError):
    pass


def option(name: str) -> Any:
    """The ``Settings`` field of option ``name``: its default, and whether ``repr`` hides it,
    come from the option table, the one place either is written."""
    opt = BY_NAME[name]
    return field(default=opt.default, repr=not opt.secret, metadata={"option": name})


@dataclass(frozen=True)
class Settings:
    # One line per option, ``name: type = option("name")``: its default is the table's. The fields
    # with a default of their own are not options (see ``load``).
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    admin_listen: str = option("admin_listen")
    warmup_timeout_s: int = option("warmup_timeout_s")
    public_url: str = option("public_url")
    twilio_auth_token: str = option("twilio_auth_token")
    console_token: str = option("console_token")
    log_format: str = option("log_format")
    log_file: str = option("log_file")
    log_level: str = option("log_level")
    stt: str = option("stt")
    tts: str = option("tts")
    agent: str = option("agent")
    script: str = option("script")
    greeting: str = option("greeting")
    openai_base_url: str = option("openai_base_url")
    openai_model: str = option("openai_model")
    system_prompt: str = option("system_prompt")
    system_prompt_file: str = option("system_prompt_file")
    llm_temperature: float | None = option("llm_temperature")
    llm_max_tokens: int = option("llm_max_tokens")
    llm_first_token_timeout_ms: int = option("llm_first_token_timeout_ms")
    llm_reply_timeout_ms: int = option("llm_reply_timeout_ms")
    webhook_url: str = option("webhook_url")
    webhook_secret: str = option("webhook_secret")
    webhook_timeout_ms: int = option("webhook_timeout_ms")
    tools_file: str = option("tools_file")
    tools_url: str = option("tools_url")
    tools_timeout_ms: int = option("tools_timeout_ms")
    agent_filler_ms: int = option("agent_filler_ms")
    phrases_file: str = option("phrases_file")
    filler_phrase: str = option("filler_phrase")
    apology_phrase: str = option("apology_phrase")
    ask_again_phrase: str = option("ask_again_phrase")
    idle_goodbye_phrase: str = option("idle_goodbye_phrase")
    time_limit_phrase: str = option("time_limit_phrase")
    drain_goodbye_phrase: str = option("drain_goodbye_phrase")
    goodbye_phrase: str = option("goodbye_phrase")
    transfer_phrase: str = option("transfer_phrase")
    idle_reprompt_ms: int = option("idle_reprompt_ms")
    idle_max_reprompts: int = option("idle_max_reprompts")
    max_call_s: int = option("max_call_s")
    transfer_targets: tuple[str, ...] = option("transfer_targets")
    twilio_api_base: str = option("twilio_api_base")
    language: str = option("language")
    eou_silence_ms: int = option("eou_silence_ms")
    min_speech_ms: int = option("min_speech_ms")
    barge_in_ms: int = option("barge_in_ms")
    vad_aggressiveness: int = option("vad_aggressiveness")
    vad: str = option("vad")
    vad_threshold: float = option("vad_threshold")
    turn_model: str = option("turn_model")
    turn_model_path: str = option("turn_model_path")
    turn_model_threshold: float = option("turn_model_threshold")
    turn_hold_ms: int = option("turn_hold_ms")
    turn_adaptive: bool = option("turn_adaptive")
    false_interruption_ms: int = option("false_interruption_ms")
    echo_guard_db: float = option("echo_guard_db")
    background_margin_db: float = option("background_margin_db")
    stt_final_timeout_ms: int = option("stt_final_timeout_ms")
    whisper_model: str = option("whisper_model")
    whisper_workers: int = option("whisper_workers")
    max_calls: int = option("max_calls")
    workers: int = option("workers")
    stt_model: str = option("stt_model")
    stt_retry_initial_ms: int = option("stt_retry_initial_ms")
    stt_retry_max_ms: int = option("stt_retry_max_ms")
    stt_retry_attempts: int = option("stt_retry_attempts")
    stt_fallback_timeout_ms: int = option("stt_fallback_timeout_ms")
    interim_phrase: str = option("interim_phrase")
    interim_wait_phrase: str = option("interim_wait_phrase")
    tts_voice: str = option("tts_voice")
    google_endpoint: str = option("google_endpoint")
    google_insecure: bool = option("google_insecure")
    google_insecure_remote: bool = option("google_insecure_remote")
    google_credentials_json: str = option("google_credentials_json")
    google_channels: int = option("google_channels")
    google_timeout_s: int = option("google_timeout_s")
    # Not options: the services' own variables, read from the same environment.
    google_credentials_file: str = ""
    openai_api_key: str = field(default="", repr=False)
    twilio_account_sid: str = ""
    twilio_rest_token: str = field(default="", repr=False)
    stt_rollover_s: int = option("stt_rollover_s")
    drain_timeout_s: int = option("drain_timeout_s")
    journal: str = option("journal")
    call_webhook_url: str = option("call_webhook_url")
    media_token_ttl_s: int = option("media_token_ttl_s")
    # telnyx
    telnyx_public_key: str = option("telnyx_public_key")
    telnyx_api_key: str = option("telnyx_api_key")
    telnyx_media_secret: str = option("telnyx_media_secret")
    telnyx_api_base: str = option("telnyx_api_base")
    # asterisk
    asterisk_secret: str = option("asterisk_secret")
    # exotel
    exotel_secret: str = option("exotel_secret")
    # audiosocket
    audiosocket_listen: str = option("audiosocket_listen")
    audiosocket_secret: str = option("audiosocket_secret")
    # plivo
    plivo_auth_token: str = option("plivo_auth_token")
    plivo_auth_id: str = option("plivo_auth_id")
    plivo_api_base: str = option("plivo_api_base")
    plivo_content_type: str = option("plivo_content_type")
    # vonage
    vonage_signature_secret: str = option("vonage_signature_secret")
    vonage_sample_rate: int = option("vonage_sample_rate")
    vonage_application_id: str = option("vonage_application_id")
    vonage_private_key_file: str = option("vonage_private_key_file")
    vonage_api_base: str = option("vonage_api_base")
    # deepgram (issue 22)
    deepgram_api_key: str = option("deepgram_api_key")
    deepgram_url: str = option("deepgram_url")
    deepgram_model: str = option("deepgram_model")
    deepgram_endpointing_ms: int = option("deepgram_endpointing_ms")
    deepgram_utterance_end_ms: int = option("deepgram_utterance_end_ms")
    # outbound calls (issue 21: dial21)
    admin_token: str = option("admin_token")
    dial_from: str = option("dial_from")
    outbound_hello_timeout_ms: int = option("outbound_hello_timeout_ms")
    # answering machines (issue 21)
    amd: str = option("amd")
    # per-call profiles (issue 22)
    profiles: str = option("profiles")
    # realtime (issue 22)
    openai_realtime_url: str = option("openai_realtime_url")
    openai_realtime_model: str = option("openai_realtime_model")
    openai_realtime_voice: str = option("openai_realtime_voice")
    realtime_turn_detection: str = option("realtime_turn_detection")
    openai_realtime_api: str = option("openai_realtime_api")
    # streaming TTS vendors and TTS fallback chains (issue 22)
    tts_first_audio_timeout_ms: int = option("tts_first_audio_timeout_ms")
    elevenlabs_api_key: str = option("elevenlabs_api_key")
    elevenlabs_voice_id: str = option("elevenlabs_voice_id")
    elevenlabs_model: str = option("elevenlabs_model")
    elevenlabs_base_url: str = option("elevenlabs_base_url")
    cartesia_api_key: str = option("cartesia_api_key")
    cartesia_voice_id: str = option("cartesia_voice_id")
    cartesia_model: str = option("cartesia_model")
    cartesia_base_url: str = option("cartesia_base_url")
    openai_tts_base_url: str = option("openai_tts_base_url")
    openai_tts_model: str = option("openai_tts_model")
    openai_tts_voice: str = option("openai_tts_voice")
    openai_tts_format: str = option("openai_tts_format")
    # recordings (issue 21)
    recordings: str = option("recordings")
    recording_retention_days: int = option("recording_retention_days")
    recording_announcement: str = option("recording_announcement")
    # dialling through Telnyx, Plivo, Vonage (issue 21)
    dial_carrier: str = option("dial_carrier")
    telnyx_connection_id: str = option("telnyx_connection_id")

    @classmethod
    def load(
        cls, options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> "Settings":
        """Merge command-line ``options`` (None = not given) over ``environ`` over defaults."""
        options = options or {}
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for opt in OPTIONS:
            raw = options.get(opt.name)
            source = f"--{opt.flag}"
            if raw is None and opt.env in environ:
                raw, source = environ[opt.env], opt.env
            if raw is None:
                continue
            try:
                values[opt.name] = opt.parse(str(int(raw)) if isinstance(raw, bool) else str(raw))
            except ValueError as e:
                raise ConfigError(f"{source}: {e}") from None
        listen = list(options.get("listen") or [])
        if not listen and environ.get("VOICED_LISTEN"):
            listen = [s.strip() for s in environ["VOICED_LISTEN"].split(",") if s.strip()]
        values["listen"] = tuple(listen) or (DEFAULT_LISTEN,)
        values["google_credentials_file"] = environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
        values["openai_api_key"] = environ.get("OPENAI_API_KEY", "")
        values["twilio_account_sid"] = environ.get("TWILIO_ACCOUNT_SID", "")
        # The account's auth token also signs Twilio's requests: one token serves both.
        values["twilio_rest_token"] = environ.get("TWILIO_AUTH_TOKEN", "") or values.get("twilio_auth_token", "")
        # Deepgram's own variable, as its tools read it (issue 22).
        values["deepgram_api_key"] = values.get("deepgram_api_key") or environ.get("DEEPGRAM_API_KEY", "")
        # The TTS vendors' own variables, as their tools read them (issue 22).
        values["elevenlabs_api_key"] = values.get("elevenlabs_api_key") or environ.get("ELEVENLABS_API_KEY", "")
        values["cartesia_api_key"] = values.get("cartesia_api_key") or environ.get("CARTESIA_API_KEY", "")
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.public_url and not self.public_url.startswith(("https://", "http://")):
            raise ConfigError("public_url must be a bare https://host[:port]")
        if self.twilio_auth_token and not self.public_url:
            # Twilio signs the public URL it called; the daemon cannot guess it behind a proxy.
            raise ConfigError("twilio_auth_token needs public_url (the https:// base Twilio calls)")
        if self.stt_retry_initial_ms > self.stt_retry_max_ms:
            raise ConfigError("stt_retry_initial_ms must not exceed stt_retry_max_ms")
        if not self.language:
            raise ConfigError("language must not be empty")
        if self.agent == "webhook" and not self.webhook_url:
            raise ConfigError("agent=webhook needs webhook_url (VOICED_WEBHOOK_URL)")
        if self.call_webhook_url and not self.journal:
            # The journal is the outbox: without it a record not delivered at once would be lost.
            raise ConfigError("call_webhook_url needs journal (VOICED_JOURNAL): undelivered records wait there")
        for name in ("webhook_url", "tools_url", "openai_base_url", "twilio_api_base", "call_webhook_url"):
            url = getattr(self, name)
            if url and urlsplit(url).scheme not in ("http", "https"):
                raise ConfigError(f"{name} must be an http:// or https:// URL, not {url!r}")
        if self.tools_file and not self.tools_url:
            raise ConfigError("tools_file needs tools_url: where the tools' calls are sent")
        if self.workers > 1:
            for endpoint in self.listen + ((self.admin_listen,) if self.admin_listen else ()):
                if not endpoint.startswith(("tcp:", "tcp6:")):
                    raise ConfigError(f"workers > 1 shares tcp: and tcp6: listeners only, not {endpoint!r} "
                                      "(terminate TLS in front of voiced)")
        if self.system_prompt and self.system_prompt_file:
            raise ConfigError("set system_prompt or system_prompt_file, not both")
        # deepgram (issue 22)
        if "deepgram" in self.stt_engines and not self.deepgram_api_key:
            raise ConfigError("stt=deepgram needs deepgram_api_key (VOICED_DEEPGRAM_API_KEY or DEEPGRAM_API_KEY)")
        if urlsplit(self.deepgram_url).scheme not in ("ws", "wss") or not urlsplit(self.deepgram_url).hostname:
            raise ConfigError(f"deepgram_url must be a wss:// (or loopback ws://) URL, not {self.deepgram_url!r}")
        if 0 < self.deepgram_utterance_end_ms < 1000:
            raise ConfigError("deepgram_utterance_end_ms must be 0 (off) or 1000 and more (Deepgram's minimum)")
        # realtime (issue 22)
        realtime_url = urlsplit(self.openai_realtime_url)
        if realtime_url.scheme not in ("ws", "wss") or not realtime_url.hostname:
            raise ConfigError(f"openai_realtime_url must be a wss:// (or loopback ws://) URL, "
                              f"not {self.openai_realtime_url!r}")
        if self.agent == "realtime" and not self.openai_api_key:
            raise ConfigError("agent=realtime needs OPENAI_API_KEY")
        if self.recording_announcement and not self.recordings:  # recordings (issue 21)
            raise ConfigError("recording_announcement needs recordings (VOICED_RECORDINGS): it announces them")
        # streaming TTS vendors (issue 22)
        self._validate_tts_vendors()

    def _validate_tts_vendors(self) -> None:
        engines = self.tts_engines
        if "elevenlabs" in engines and not self.elevenlabs_api_key:
            raise ConfigError("tts=elevenlabs needs elevenlabs_api_key (VOICED_ELEVENLABS_API_KEY or ELEVENLABS_API_KEY)")
        if "elevenlabs" in engines and not self.elevenlabs_voice_id:
            raise ConfigError("tts=elevenlabs needs elevenlabs_voice_id")
        if "cartesia" in engines and not self.cartesia_api_key:
            raise ConfigError("tts=cartesia needs cartesia_api_key (VOICED_CARTESIA_API_KEY or CARTESIA_API_KEY)")
        if "cartesia" in engines and not self.cartesia_voice_id:
            raise ConfigError("tts=cartesia needs cartesia_voice_id (VOICED_CARTESIA_VOICE_ID)")
        for name in ("elevenlabs_base_url", "cartesia_base_url", "openai_tts_base_url"):
            url = getattr(self, name)
            if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
                raise ConfigError(f"{name} must be an http:// or https:// URL, not {url!r}")
        speech_base = self.openai_tts_base_url or self.openai_base_url
        if "openai" in engines and urlsplit(speech_base).hostname == "api.openai.com" and not self.openai_api_key:
            raise ConfigError("tts=openai against api.openai.com needs OPENAI_API_KEY")

    @property
    def call_limit(self) -> int:
        """max_calls, or what this machine's cores carry (see README's performance section)."""
        return self.max_calls or CALLS_PER_WORKER * min(self.workers, os.cpu_count() or 1)

    @property
    def signed_carriers(self) -> list[str]:
        """The carriers whose secret is set: their unsigned requests are refused."""
        return [carrier for carrier, secret in CARRIER_SECRETS.items() if getattr(self, secret)]

    @property
    def twilio_rest_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_rest_token)

    @property
    def google_configured(self) -> bool:
        return bool(self.google_endpoint or self.google_credentials_json or self.google_credentials_file)

    @property
    def public_host(self) -> str:
        """host[:port] of public_url ("" when unset)."""
        return urlsplit(self.public_url).netloc

    @property
    def stt_engine(self) -> str:
        if self.stt != "auto":
            return self.stt
        return "google" if self.google_configured else "local"

    @property
    def stt_engines(self) -> tuple[str, ...]:
        """The STT engines in fallback order (one, unless VOICED_STT is a chain such as deepgram,google)."""
        return tuple(self.stt_engine.split(","))

    @property
    def tts_engine(self) -> str:
        if self.tts != "auto":
            return self.tts
        return "google" if self.google_configured else "local"

    @property
    def tts_engines(self) -> tuple[str, ...]:
        """The TTS engines in fallback order (one, unless VOICED_TTS is a chain such as elevenlabs,google,local)."""
        return tuple(self.tts_engine.split(","))

    @property
    def google_stt_model(self) -> str:
        """stt_model, or the model Google serves this language on the phone with."""
        from voiced.google.models import default_stt_model

        return self.stt_model or default_stt_model(self.language)

    def phrase_catalog(self) -> "PhraseCatalog":
        """What voiced says itself in this language, each phrase option over the catalog."""
        from voiced.phrases import load_catalog

        overrides = {key: getattr(self, f"{key}_phrase") for key in PHRASE_OPTIONS}
        overrides["greeting"] = self.greeting
        return load_catalog(self.language, self.phrases_file, overrides)

    def summary(self) -> str:
        """One line for APP_START: what differs from the defaults; secrets redacted."""
        parts = [f"listen={','.join(self.listen)}", f"stt={self.stt_engine}", f"tts={self.tts_engine}",
                 f"agent={self.agent}", f"language={self.language}"]
        for f in fields(self):
            if f.name in ("listen", "stt", "tts", "agent", "language"):
                continue
            value = getattr(self, f.name)
            if value == f.default:
                continue
            opt = BY_NAME.get(f.name)
            if (opt is not None and opt.secret) or f.name in ("openai_api_key", "twilio_rest_token"):
                value = "<redacted>" if value else ""
            if value in ("", None, ()):
                continue
            text = str(value)
            parts.append(f"{f.name}={text if len(text) <= 60 else text[:57] + '...'}")
        return " ".join(parts)
