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


@dataclass(frozen=True)
class Settings:
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    admin_listen: str = ""
    warmup_timeout_s: int = 300
    public_url: str = ""
    twilio_auth_token: str = field(default="", repr=False)
    console_token: str = field(default="", repr=False)
    log_format: str = "text"
    log_file: str = ""
    log_level: str = "info"
    stt: str = "auto"
    tts: str = "auto"
    agent: str = "script"
    script: str = ""
    greeting: str = ""
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    system_prompt: str = ""
    system_prompt_file: str = ""
    llm_temperature: float | None = None
    llm_max_tokens: int = 0
    llm_first_token_timeout_ms: int = 5000
    llm_reply_timeout_ms: int = 30000
    webhook_url: str = ""
    webhook_secret: str = field(default="", repr=False)
    webhook_timeout_ms: int = 10000
    tools_file: str = ""
    tools_url: str = ""
    tools_timeout_ms: int = 8000
    agent_filler_ms: int = 1200
    phrases_file: str = ""
    filler_phrase: str = ""
    apology_phrase: str = ""
    ask_again_phrase: str = ""
    idle_goodbye_phrase: str = ""
    time_limit_phrase: str = ""
    drain_goodbye_phrase: str = ""
    goodbye_phrase: str = ""
    transfer_phrase: str = ""
    idle_reprompt_ms: int = 8000
    idle_max_reprompts: int = 2
    max_call_s: int = 1800
    transfer_targets: tuple[str, ...] = ()
    twilio_api_base: str = "https://api.twilio.com"
    language: str = "en-US"
    eou_silence_ms: int = 240
    min_speech_ms: int = 60
    barge_in_ms: int = 360
    vad_aggressiveness: int = 2
    vad: str = "webrtc"
    vad_threshold: float = 0.5
    turn_model: str = "smart-turn"
    turn_model_path: str = ""
    turn_model_threshold: float = 0.9
    turn_hold_ms: int = 1100
    turn_adaptive: bool = False
    false_interruption_ms: int = 1500
    echo_guard_db: float = 15.0
    background_margin_db: float = 10.0
    stt_final_timeout_ms: int = 1500
    whisper_model: str = ""
    whisper_workers: int = 1
    max_calls: int = 0
    workers: int = 1
    stt_model: str = ""
    stt_retry_initial_ms: int = 200
    stt_retry_max_ms: int = 1600
    stt_retry_attempts: int = 4
    stt_fallback_timeout_ms: int = 4000
    interim_phrase: str = ""
    interim_wait_phrase: str = ""
    tts_voice: str = ""
    google_endpoint: str = ""
    google_insecure: bool = False
    google_insecure_remote: bool = False
    google_credentials_json: str = field(default="", repr=False)
    google_channels: int = 4
    google_timeout_s: int = 330
    # Not options: the services' own variables, read from the same environment.
    google_credentials_file: str = ""
    openai_api_key: str = field(default="", repr=False)
    twilio_account_sid: str = ""
    twilio_rest_token: str = field(default="", repr=False)
    stt_rollover_s: int = 240
    drain_timeout_s: int = 300
    journal: str = ""
    call_webhook_url: str = ""
    media_token_ttl_s: int = 300
    # telnyx
    telnyx_public_key: str = ""
    telnyx_api_key: str = field(default="", repr=False)
    telnyx_media_secret: str = field(default="", repr=False)
    telnyx_api_base: str = "https://api.telnyx.com"
    # asterisk
    asterisk_secret: str = field(default="", repr=False)
    # exotel
    exotel_secret: str = field(default="", repr=False)
    # audiosocket
    audiosocket_listen: str = ""
    audiosocket_secret: str = field(default="", repr=False)
    # plivo
    plivo_auth_token: str = field(default="", repr=False)
    plivo_auth_id: str = ""
    plivo_api_base: str = "https://api.plivo.com"
    plivo_content_type: str = "audio/x-mulaw;rate=8000"
    # vonage
    vonage_signature_secret: str = field(default="", repr=False)
    vonage_sample_rate: int = 16000
    vonage_application_id: str = ""
    vonage_private_key_file: str = ""
    vonage_api_base: str = "https://api.nexmo.com"
    # recordings (issue 21)
    recordings: str = ""
    recording_retention_days: int = 30
    recording_announcement: str = ""

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
        if self.recording_announcement and not self.recordings:  # recordings (issue 21)
            raise ConfigError("recording_announcement needs recordings (VOICED_RECORDINGS): it announces them")

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
    def tts_engine(self) -> str:
        if self.tts != "auto":
            return self.tts
        return "google" if self.google_configured else "local"

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
