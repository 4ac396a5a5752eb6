"""The option table: every ``--some-name`` option, its ``VOICED_SOME_NAME`` twin, its parser,
default and help. The single source for the twistd options (``voiced.tap``), the tac file,
``Settings`` (``voiced.config``) and README's configuration table (a test checks it)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# The parsers, by the names the table's rows use.
from voiced.option_parsers import (_bool, _choice, _dial_from, _dialplan_secret, _ed25519_public_key, _float_range,
                                   _fraction, _int_range, _language, _str, _stt_engines, _targets, _tcp_endpoint,
                                   _tts_engines)

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"


@dataclass(frozen=True)
class Option:
    name: str  # attribute name; --name-with-dashes and VOICED_NAME_UPPER derive from it
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False
    # A flag on the command line (--name, no value); its environment twin takes 1/0.
    flag_only: bool = False

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
    Option("console_token", _str, "",
           "token for /console (pages, streams, softphone); without it the console is on only on loopback "
           "with no Twilio token", secret=True),
    Option("admin_listen", _str, "",
           "endpoint for /health* and /metrics alone (empty: served on --listen with /media)"),
    Option("warmup_timeout_s", _int_range(1, 86400), 300,
           "not ready this long after start: /health reports unhealthy (a supervisor restarts it)"),
    Option("log_format", _choice("text", "json"), "text", "log output: text or json lines"),
    Option("log_file", _str, "", "append logs to this file (default: stdout; voiced.log when daemonized)"),
    Option("log_level", _choice("debug", "info", "warn", "error"), "info", "lowest log level written"),
    Option("stt", _stt_engines, "auto", "speech-to-text engine: local, google or deepgram, or a fallback chain "
           "such as deepgram,google (auto: google if configured)"),
    Option("agent", _choice("script", "openai", "webhook", "realtime"), "script",
           "reply agent: script, openai, webhook or realtime (OpenAI Realtime, speech to speech)"),
    Option("tts", _tts_engines, "auto", "text-to-speech engine: local, google, elevenlabs, cartesia or openai, or "
           "a fallback chain such as elevenlabs,google,local (auto: google if configured)"),
    Option("script", _str, "", "dialog file for the script agent (default: the built-in front desk)"),
    Option("greeting", _str, "", "what the openai and webhook agents say first (default: the language's "
           "phrase catalog; the script has its own)"),
    Option("openai_base_url", _str, "https://api.openai.com/v1", "OpenAI-compatible API base (vLLM, Ollama, ...)"),
    Option("openai_model", _str, "gpt-4o-mini", "chat model of the openai agent"),
    Option("system_prompt", _str, "", "the openai agent's system prompt"),
    Option("system_prompt_file", _str, "", "read the system prompt from this file instead"),
    Option("llm_temperature", _float_range(0, 2), None, "sampling temperature (empty: the server's default)"),
    Option("llm_max_tokens", _int_range(0, 100000), 0, "longest reply in tokens (0: the server's default)"),
    Option("llm_first_token_timeout_ms", _int_range(100, 120000), 5000,
           "no reply text within this: the reply failed (apology)"),
    Option("llm_reply_timeout_ms", _int_range(100, 600000), 30000, "bound on one whole LLM reply"),
    Option("webhook_url", _str, "", "the webhook agent's URL (POST, JSON)"),
    Option("webhook_secret", _str, "", "HMAC key of X-Voiced-Signature on webhook and tool requests", secret=True),
    Option("webhook_timeout_ms", _int_range(100, 120000), 10000, "bound on one webhook answer"),
    Option("tools_file", _str, "", "OpenAI tool definitions (JSON list) offered to the model"),
    Option("tools_url", _str, "", "where the openai agent POSTs the tool calls of --tools-file"),
    Option("tools_timeout_ms", _int_range(100, 120000), 8000, "bound on one tool call"),
    Option("agent_filler_ms", _int_range(0, 60000), 1200, "no first sentence within this: play the filler (0: never)"),
    Option("phrases_file", _str, "", "a phrase catalog (key = text lines, as voiced/phrases/he.txt) over the "
           "language's own: a language voiced does not ship"),
    Option("filler_phrase", _str, "", "the filler (default: the language's phrase catalog, as for every phrase)"),
    Option("apology_phrase", _str, "", "said when the agent fails"),
    Option("ask_again_phrase", _str, "", "said when nothing could be transcribed of what the caller said"),
    Option("idle_goodbye_phrase", _str, "", "said before hanging up on a silent caller"),
    Option("time_limit_phrase", _str, "", "said before hanging up at --max-call-s"),
    Option("drain_goodbye_phrase", _str, "", "said to calls still up when the drain times out"),
    Option("goodbye_phrase", _str, "", "said when the LLM hangs up without a word"),
    Option("transfer_phrase", _str, "", "said when the LLM transfers the call without a word"),
    Option("idle_reprompt_ms", _int_range(0, 600000), 8000,
           "caller silence after the bot finished before the agent gets an idle event (0: never)"),
    Option("idle_max_reprompts", _int_range(0, 100), 2, "idle events in a row before a goodbye and hang-up"),
    Option("max_call_s", _int_range(0, 86400), 1800, "longest call; then a polite goodbye (0: no limit)"),
    Option("transfer_targets", _targets, (), "where the openai agent may transfer calls: comma-separated "
           "+E.164 numbers or sip: URIs (empty: it cannot)"),
    Option("twilio_api_base", _str, "https://api.twilio.com", "Twilio REST base URL (hang-up and transfer)"),
    Option("language", _language, "en-US", "BCP-47 language of callers and replies"),
    Option("eou_silence_ms", _int_range(20, 5000), 240, "silence after speech that ends the caller's turn"),
    Option("min_speech_ms", _int_range(20, 2000), 60, "voiced audio needed before a sound counts as speech"),
    Option("barge_in_ms", _int_range(20, 3000), 360, "caller speech over a reply needed to interrupt it (a "
           "\"yeah\" is shorter)"),
    Option("vad_aggressiveness", _int_range(0, 3), 2, "webrtcvad aggressiveness, 0 (lenient) to 3 (strict)"),
    Option("vad", _choice("webrtc", "silero"), "webrtc", "voice-activity detector: webrtc (cheapest) or silero "
           "(a model: better on noise)"),
    Option("vad_threshold", _fraction, 0.5, "speech probability from which a frame is speech (silero; e.g. 0.25 "
           "hears soft speakers, at more noise)"),
    Option("turn_model", _choice("off", "smart-turn"), "smart-turn", "semantic end-of-turn model: smart-turn "
           "(Smart Turn v3.2) hears whether the caller finished, or off"),
    Option("turn_model_path", _str, "", "the Smart Turn ONNX file (default: the one in the pipecat-ai wheel)"),
    Option("turn_model_threshold", _fraction, 0.9, "P(turn complete) from which a reply plays without the hold"),
    Option("turn_hold_ms", _int_range(0, 10000), 1100, "silence after the caller's last word before a reply "
           "plays, unless the model says the turn is complete (0: at once)"),
    Option("turn_adaptive", _bool, False, "a caller who pauses long mid-turn gets a longer wait"),
    Option("false_interruption_ms", _int_range(0, 10000), 1500, "after a barge-in, how long no words (or only "
           "backchannel words) resume the stopped reply (0: never)"),
    Option("echo_guard_db", _float_range(0, 60), 15.0, "caller sound this far under the bot's own level is "
           "its echo, never a barge-in (0: off)"),
    Option("background_margin_db", _float_range(0, 60), 10.0, "sound this far under the caller's usual "
           "level is background talk, never a barge-in (0: off)"),
    Option("stt_final_timeout_ms", _int_range(100, 10000), 1500, "longest wait for a final after end of speech"),
    Option("whisper_model", _str, "", "a CTranslate2 Whisper model directory, or a faster-whisper name / Hugging "
           "Face repo id already in the HF cache (default: the bundled tiny.en)"),
    Option("whisper_workers", _int_range(1, 64), 1, "Whisper transcriptions at once (each takes a core for ~0.3 s)"),
    Option("max_calls", _int_range(0, 100000), 0,
           "calls at once; beyond, /media upgrades get HTTP 503 (0: 200 per worker, up to one worker per core)"),
    Option("workers", _int_range(1, 64), 1,
           "voiced processes sharing the listening ports, a reactor (core) each (README: 2 on 2 cores)"),
    Option("stt_model", _str, "", "Google STT model (default: phone_call where Google offers it for the "
           "language, else default)"),
    Option("stt_retry_initial_ms", _int_range(1, 60000), 200, "first STT retry delay (doubles each attempt)"),
    Option("stt_retry_max_ms", _int_range(1, 60000), 1600, "largest STT retry delay"),
    Option("stt_retry_attempts", _int_range(0, 20), 4, "STT retries per failure before the interim phrase"),
    Option("stt_fallback_timeout_ms", _int_range(100, 30000), 4000, "bound on the Whisper fallback after STT fails"),
    Option("interim_phrase", _str, "", "what the caller hears when STT fails"),
    Option("interim_wait_phrase", _str, "", "what the caller hears when STT fails but the fallback is transcribing"),
    Option("tts_voice", _str, "", "Google TTS voice name (default: Google's voice for the language)"),
    Option("google_endpoint", _str, "", "host:port of the Google speech APIs (an emulator)"),
    Option("google_insecure", _bool, False, "plaintext gRPC to --google-endpoint (loopback only)", flag_only=True),
    Option("google_insecure_remote", _bool, False, "allow plaintext gRPC to a non-loopback endpoint",
           flag_only=True),
    Option("google_credentials_json", _str, "", "service-account JSON (materialized once, mode 0600)", secret=True),
    Option("google_channels", _int_range(1, 64), 4, "gRPC channels in the STT channel pool"),
    Option("google_timeout_s", _int_range(1, 3600), 330, "deadline of one Google STT stream, seconds"),
    Option("stt_rollover_s", _int_range(10, 300), 240, "Google STT stream age to replace it (at a final or silence)"),
    # Reliability (issue 8): draining, the call journal and its delivery outbox.
    Option("drain_timeout_s", _int_range(0, 86400), 300,
           "on SIGTERM, calls in progress have this long to end before a goodbye closes them"),
    Option("journal", _str, "", "SQLite file where every ended call's record is committed (empty: no journal)"),
    Option("call_webhook_url", _str, "",
           "POST every call record here as JSON, signed, retried until delivered (needs --journal)"),
    Option("media_token_ttl_s", _int_range(10, 86400), 300,
           "lifetime of the per-call media token in the TwiML (with a Twilio auth token)"),
    # telnyx
    Option("telnyx_public_key",
           _ed25519_public_key, "",
           "Telnyx account public key (base64, Keys & Credentials): check telnyx-signature-ed25519 on "
           "/answer/telnyx"),
    Option("telnyx_api_key", _str, "", "Telnyx API key: hang-up and transfer through Call Control", secret=True),
    Option("telnyx_media_secret", _str, "",
           "keys the per-call media token in the TeXML (default: the Telnyx API key)", secret=True),
    Option("telnyx_api_base", _str, "https://api.telnyx.com", "Telnyx REST base URL (hang-up and transfer)"),
    # asterisk
    Option("asterisk_secret", _str, "",
           "shared secret Asterisk's chan_websocket presents on /media/asterisk (the websocket_client.conf "
           "password, or ?secret= in its uri)", secret=True),
    # exotel
    Option("exotel_secret", _str, "",
           "Exotel Voicebot applet credentials, user:password (or a token as the user): its wss:// URL "
           "carries them as basic auth, checked on /media/exotel", secret=True),
    # audiosocket
    Option("audiosocket_listen", _tcp_endpoint, "", "endpoint for Asterisk AudioSocket connections, plain TCP on "
           "a private interface (tcp:9092:interface=10.0.0.5; empty: off)"),
    Option("audiosocket_secret", _dialplan_secret, "", "secret the dialplan signs each AudioSocket call UUID with "
           "(README); without it AudioSocket takes calls only on a loopback endpoint", secret=True),
    # plivo
    Option("plivo_auth_token", _str, "",
           "Plivo auth token: check X-Plivo-Signature-V3 on /answer/plivo and the media token on /media/plivo",
           secret=True),
    Option("plivo_auth_id", _str, "", "Plivo auth ID: with plivo_auth_token, REST hang-up and transfer"),
    Option("plivo_api_base", _str, "https://api.plivo.com", "Plivo REST base URL (hang-up and transfer)"),
    Option("plivo_content_type", _choice("audio/x-mulaw;rate=8000", "audio/x-l16;rate=8000", "audio/x-l16;rate=16000"),
           "audio/x-mulaw;rate=8000", "audio the Plivo <Stream> asks for"),
    # vonage
    Option("vonage_signature_secret", _str, "", "Vonage signature secret: check the JWT on /answer/vonage and "
           "/media/vonage, and key the NCCO's per-call media token", secret=True),
    Option("vonage_sample_rate", lambda v: int(_choice("8000", "16000", "24000")(v.strip())), 16000,
           "the audio rate the NCCO asks Vonage for (audio/l16;rate=N); 8000 skips resampling"),
    Option("vonage_application_id", _str, "", "Vonage application id: with --vonage-private-key-file, hang-up "
           "and transfer through the Voice API"),
    Option("vonage_private_key_file", _str, "", "the Vonage application's private key (PEM) that signs its "
           "Voice API requests"),
    Option("vonage_api_base", _str, "https://api.nexmo.com", "Vonage Voice API base URL (hang-up and transfer)"),
    # deepgram (issue 22): VOICED_STT=deepgram
    Option("deepgram_api_key", _str, "", "Deepgram API key for VOICED_STT=deepgram (also read from "
           "DEEPGRAM_API_KEY)", secret=True),
    Option("deepgram_url", _str, "wss://api.deepgram.com/v1/listen", "Deepgram live transcription URL "
           "(ws:// only for a loopback test server)"),
    Option("deepgram_model", _str, "nova-3", "Deepgram model (nova-3 serves en, he and most languages; nova-2 "
           "a few nova-3 does not)"),
    Option("deepgram_endpointing_ms", _int_range(0, 10000), 300, "silence after which Deepgram finalizes a "
           "segment (0: off; voiced's own end of turn sends Finalize either way)"),
    Option("deepgram_utterance_end_ms", _int_range(0, 5000), 1000, "gap between words for Deepgram's "
           "UtteranceEnd (0: not asked for; Deepgram takes 1000 or more)"),
    # outbound calls (issue 21: dial21)
    Option("admin_token", _str, "", "bearer token for POST /calls and GET /calls/ID on the operators' routes "
           "(unset: they answer 503)", secret=True),
    Option("dial_from", _dial_from, "", "the caller id (E.164) outbound calls show unless POST /calls gives "
           "\"from\""),
    Option("outbound_hello_timeout_ms", _int_range(0, 10000), 2500, "an outbound call's greeting waits for the "
           "callee's first words to end, or this long without any"),
    # answering machines (issue 21)
    Option("amd", _choice("voiced", "carrier", "off"), "voiced",
           "answering-machine detection on outbound calls: voiced (the answer's shape and the beep), carrier "
           "(Twilio's async AMD at /twilio/amd, voiced's after 6 s without it) or off"),
    # per-call profiles (issue 22): a stream's `profile` parameter picks one
    Option("profiles", _str, "", "a TOML file of named call profiles (language, voice, agent, engines) a "
           "stream's profile parameter or the called number chooses from (README: Profiles)"),
    # realtime (issue 22): VOICED_AGENT=realtime, OpenAI Realtime speech to speech (key: OPENAI_API_KEY)
    Option("openai_realtime_url", _str, "wss://api.openai.com/v1/realtime", "OpenAI Realtime WebSocket URL "
           "(ws:// only for a loopback test server)"),
    Option("openai_realtime_model", _str, "gpt-realtime", "the realtime agent's model"),
    Option("openai_realtime_voice", _str, "", "the realtime agent's voice (alloy, ash, marin, ...; empty: "
           "the model's default)"),
    Option("realtime_turn_detection", _choice("voiced", "server"), "voiced", "who ends the caller's turn "
           "for the realtime agent: voiced (its VAD and end of turn) or server (the model's server_vad)"),
    Option("openai_realtime_api", _choice("beta", "ga"), "beta", "the Realtime interface's event shapes: beta "
           "(input_audio_format, OpenAI-Beta header) or ga (session.type, audio.input.format)"),
    # streaming TTS vendors and TTS fallback chains (issue 22): VOICED_TTS=elevenlabs,google,local
    Option("tts_first_audio_timeout_ms", _int_range(100, 30000), 2000, "a TTS engine of a chain with no audio "
           "of a sentence this long (or a stall as long) hands the sentence to the next engine"),
    Option("elevenlabs_api_key", _str, "", "ElevenLabs API key for VOICED_TTS=elevenlabs (also read from "
           "ELEVENLABS_API_KEY)", secret=True),
    Option("elevenlabs_voice_id", _str, "JBFqnCBsd6RMkjVDRZzb", "ElevenLabs voice id"),
    Option("elevenlabs_model", _str, "eleven_flash_v2_5", "ElevenLabs model (flash v2.5: the lowest latency)"),
    Option("elevenlabs_base_url", _str, "https://api.elevenlabs.io", "ElevenLabs API base URL"),
    Option("cartesia_api_key", _str, "", "Cartesia API key for VOICED_TTS=cartesia (also read from "
           "CARTESIA_API_KEY)", secret=True),
    Option("cartesia_voice_id", _str, "", "Cartesia voice id (required with VOICED_TTS=cartesia)"),
    Option("cartesia_model", _str, "sonic-2", "Cartesia model"),
    Option("cartesia_base_url", _str, "https://api.cartesia.ai", "Cartesia API base URL"),
    Option("openai_tts_base_url", _str, "", "OpenAI-compatible speech API base for VOICED_TTS=openai (empty: "
           "--openai-base-url)"),
    Option("openai_tts_model", _str, "gpt-4o-mini-tts", "speech model of VOICED_TTS=openai (kokoro for "
           "Kokoro-FastAPI)"),
    Option("openai_tts_voice", _str, "alloy", "voice of VOICED_TTS=openai"),
    Option("openai_tts_format", _choice("pcm", "wav"), "pcm", "response_format asked of the speech server: pcm "
           "(24 kHz 16-bit) or wav"),
    # recordings (issue 21): every call in a stereo WAV, caller left, bot right.
    Option("recordings", _str, "", "directory where every call is recorded as it goes, a stereo WAV file (caller "
           "left, bot right) named in the call's record (empty: off)"),
    Option("recording_retention_days", _int_range(0, 36500), 30,
           "recordings older than this many days are deleted by a daily sweep (0: kept for ever)"),
    Option("recording_announcement", _str, "", "spoken before the greeting of every call while recording "
           "(a consent notice: \"This call is recorded.\"); empty: none"),
    # dialling through Telnyx, Plivo, Vonage (issue 21)
    Option("dial_carrier", _choice("", "twilio", "telnyx", "plivo", "vonage"), "",
           "the carrier POST /calls dials through when the request names none (empty: the first configured of "
           "twilio, telnyx, plivo, vonage)"),
    Option("telnyx_connection_id", _str, "", "the Telnyx Call Control application (connection_id) outbound "
           "calls are placed on; with telnyx_api_key, voiced can dial through Telnyx"),
]

BY_NAME = {o.name: o for o in OPTIONS}


def default(name: str) -> Any:
    """Option ``name``'s default, for a settings object narrower than ``Settings`` (the call's,
    an agent's, a policy's): the table is the one place a default is written."""
    return BY_NAME[name].default


#: Catalog keys with a --KEY-phrase option of their own (the greeting has --greeting).
PHRASE_OPTIONS = tuple(o.name.removesuffix("_phrase") for o in OPTIONS if o.name.endswith("_phrase"))
#: VOICED_* variables that are not options but are read all the same.
OTHER_ENV = frozenset({"VOICED_LISTEN"})


def unknown_env_warnings(environ: Mapping[str, str]) -> list[str]:
    """One warning per VOICED_* variable no option reads (a typo is otherwise silently ignored)."""
    known = sorted({o.env for o in OPTIONS} | OTHER_ENV)
    warnings = []
    for name in sorted(k for k in environ if k.startswith("VOICED_") and k not in known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a voiced setting and is ignored{hint}")
    return warnings
