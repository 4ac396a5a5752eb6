"""Start-up checks: what retrying cannot fix is found before twistd reports started.

twistd forks into a daemon *after* ``makeService`` and reports success once
``startService`` returns, so a problem found in warm-up leaves a daemon that says
it is alive and can never take a call. Everything here runs in ``makeService``,
before the fork, and touches nothing a later start could trip on: it reads files,
parses endpoints, loads (never writes) credentials and probes that listen ports are
free. ``check`` raises ``ConfigError`` with the one-line reason; what is suspicious
but workable comes back as warnings for the start-up log.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from dataclasses import replace
from typing import Any, Mapping

from voiced.config import ConfigError, Settings
from voiced.options import unknown_env_warnings

#: Google closes a StreamingRecognize stream at about 305 s of audio.
GOOGLE_STREAM_LIMIT_S = 300
#: HF_HUB_OFFLINE values that mean "online" (huggingface_hub's own false values): set
#: explicitly, they are the operator's opt-in to fetch a named Whisper model at start-up.
#: Unset, voiced never fetches: a missing model is a one-line error naming the command.
HF_ONLINE_VALUES = frozenset({"0", "false", "no", "off"})


def check(settings: Settings, environ: Mapping[str, str] | None = None, reactor: Any = None) -> list[str]:
    """Raise ConfigError for a configuration the daemon cannot work with; return warnings."""
    environ = os.environ if environ is None else environ
    for endpoint in settings.listen:
        check_listen("--listen", endpoint, reactor)
    if settings.admin_listen:
        check_listen("--admin-listen", settings.admin_listen, reactor)
    _check_files(settings)
    fetched = _check_whisper_model(settings, environ)
    profiles, profile_warnings = _check_profiles(settings)  # per-call profiles (issue 22)
    if any("google" in s.stt_engines or "google" in s.tts_engines for s in (settings, *profiles)):
        _check_google(settings, environ)
    return (unknown_env_warnings(environ) + fetched + _check_language(settings) + profile_warnings
            + _warnings(settings))


def _check_profiles(settings: Settings) -> tuple[list[Settings], list[str]]:
    """Every profile of --profiles as its calls will see it, and its warnings; ConfigError names
    the file and the profile voiced could not serve (a call would meet it only at run time)."""
    if not settings.profiles:
        return [], []
    from voiced.agent.dialog import builtin_dialog_name
    from voiced.language import primary
    from voiced.phrases import FALLBACK_LANGUAGE, builtin_name
    from voiced.profiles import load_profiles

    profiles = load_profiles(settings.profiles)
    checked, warnings = [], []
    for name in profiles.profiles:
        try:
            p = profiles.settings_for(settings, name)
            _check_files(replace(p, journal="", log_file=""))  # the daemon's own, checked above
            if ("google" in p.stt_engines or "google" in p.tts_engines) and not p.google_configured:
                raise ConfigError(f"{'stt' if 'google' in p.stt_engines else 'tts'}=google needs Google configured "
                                  "(GOOGLE_APPLICATION_CREDENTIALS, VOICED_GOOGLE_CREDENTIALS_JSON or "
                                  "VOICED_GOOGLE_ENDPOINT)")
            english = primary(p.language) == FALLBACK_LANGUAGE
            if not english and builtin_name(p.language) is None and not p.phrases_file:
                raise ConfigError(f"language={p.language}: voiced has no phrase catalog for it; add "
                                  "voiced/phrases/<language>.txt")
            if p.agent == "script" and not p.script and not english and builtin_dialog_name(p.language) is None:
                raise ConfigError(f"language={p.language}: the script agent has no built-in dialog in it; give "
                                  "the profile a script")
            if p.language != settings.language:  # the daemon's own language was checked above
                warnings += [f"profile {name!r}: {w}" for w in _check_language(p)]
        except ConfigError as e:
            raise ConfigError(f"VOICED_PROFILES {profiles.path}: profile {name!r}: {e}") from None
        checked.append(p)
    return checked, warnings


def check_listen(option: str, endpoint: str, reactor: Any = None) -> None:
    """Parse an endpoint string as twistd will, and check its TCP port is free to bind."""
    from twisted.internet.endpoints import serverFromString

    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    try:
        parsed = serverFromString(reactor, endpoint)
    except ValueError as e:
        raise ConfigError(f"{option} {endpoint!r}: {_endpoint_problem(e)}") from None
    except OSError as e:  # ssl: a key or certificate file that cannot be read
        raise ConfigError(f"{option} {endpoint!r}: cannot read {e.filename or 'a key file'}: {e.strerror}") from None
    except Exception as e:  # e.g. an ssl key that does not parse
        raise ConfigError(f"{option} {endpoint!r}: {type(e).__name__}: {e}") from None
    problem = _bind_problem(parsed)
    if problem:
        raise ConfigError(f"{option} {endpoint!r}: {problem}")


def _endpoint_problem(error: ValueError) -> str:
    text = str(error)
    if text.startswith("invalid literal for int()"):
        return f"the port must be a number, not {text.split(': ', 1)[-1]}"
    if text.startswith("Unknown endpoint type"):
        return f"{text[0].lower()}{text[1:]} (use tcp:PORT, tcp:PORT:interface=ADDRESS, ssl:PORT:privateKey=KEY.pem)"
    return text


def _bind_problem(endpoint: Any) -> str | None:
    """Bind (and at once close) the endpoint's TCP port; the listener itself is only made
    after the fork, where an error no longer reaches the terminal whole."""
    port, interface = getattr(endpoint, "_port", None), getattr(endpoint, "_interface", None)
    if not isinstance(port, int) or port == 0 or interface is None:
        return None  # not TCP (unix:, ...), or an ephemeral port
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as twisted's own Port does
        probe.bind((interface or ("::" if family == socket.AF_INET6 else ""), port))
    except OSError as e:
        return listen_problem(e, port, interface)
    finally:
        probe.close()
    return None


def listen_problem(error: OSError | None, port: int | str, interface: str) -> str:
    """What an operator needs to hear about a failed bind, in a few words."""
    where = f"port {port} on {interface or 'all interfaces'}"
    code = getattr(error, "errno", None)
    if code == errno.EADDRINUSE:
        return f"{where} is already in use"
    if code == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    if code == errno.EADDRNOTAVAIL:
        return f"{interface} is not an address of this host"
    return f"cannot listen on {where}: {getattr(error, 'strerror', None) or error}"


def _readable(what: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: {path} is not UTF-8 text") from None


def _check_files(settings: Settings) -> None:
    s = settings
    if s.agent == "script" and s.script:
        from voiced.agent.dialog import load_dialog

        _readable("VOICED_SCRIPT", s.script)
        try:
            load_dialog(s.script)  # pure parsing (not the agent: that counts as a construction)
        except ValueError as e:
            raise ConfigError(f"VOICED_SCRIPT: {e}") from None
    if s.agent == "openai" and s.system_prompt_file:
        if not _readable("VOICED_SYSTEM_PROMPT_FILE", s.system_prompt_file).strip():
            raise ConfigError(f"VOICED_SYSTEM_PROMPT_FILE: {s.system_prompt_file} is empty")
    if s.agent == "openai" and s.tools_file:
        try:
            tools = json.loads(_readable("VOICED_TOOLS_FILE", s.tools_file))
        except json.JSONDecodeError as e:
            raise ConfigError(f"VOICED_TOOLS_FILE: {s.tools_file} is not JSON (line {e.lineno})") from None
        if not isinstance(tools, list):
            raise ConfigError(f"VOICED_TOOLS_FILE: {s.tools_file} must hold a JSON list of tools")
    if s.log_file:
        directory = os.path.dirname(os.path.abspath(s.log_file))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"VOICED_LOG_FILE: cannot write a log file in {directory}")
    if s.journal:
        _check_journal(s.journal)


def _check_whisper_model(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """VOICED_WHISPER_MODEL loads without a download: a CTranslate2 directory, or a model
    name already in the Hugging Face cache. With HF_HUB_OFFLINE=0 set, a name not cached is
    fetched here, before the fork and before any call; never later."""
    name = settings.whisper_model
    if not name:
        return []  # the bundled tiny.en
    from voiced.stt.local import WhisperModelMissing, resolve_whisper_model

    try:
        resolve_whisper_model(name, environ)
        return []
    except WhisperModelMissing as missing:
        if environ.get("HF_HUB_OFFLINE", "").strip().lower() not in HF_ONLINE_VALUES:
            raise ConfigError(f"VOICED_WHISPER_MODEL: {missing} (or start once with HF_HUB_OFFLINE=0 "
                              "to fetch it before start-up)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"VOICED_WHISPER_MODEL: {e}") from None
    # The operator's opt-in: minutes for a large model, and logging is not started yet.
    sys.stderr.write(f"voiced: fetching the Whisper model {name} (HF_HUB_OFFLINE=0) before start-up...\n")
    try:
        path = resolve_whisper_model(name, environ, download=True)
    except Exception as e:  # the hub's errors are many: any of them ends the start-up in one line
        reason = (str(e).splitlines() or [""])[0]
        raise ConfigError(f"VOICED_WHISPER_MODEL: could not fetch {name}: {type(e).__name__}: {reason}") from None
    return [f"VOICED_WHISPER_MODEL={name} was fetched at start-up into {path} (HF_HUB_OFFLINE=0); "
            "later starts load it from there"]


def _check_journal(path: str) -> None:
    """The journal opens (created at the current schema if new): before the fork, so that a
    file that is not a database, or a newer schema, is one line and exit 1."""
    import sqlite3

    from voiced.journal.store import JournalError, open_for_writing

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"VOICED_JOURNAL: cannot write a journal in {directory} (WAL needs the directory too)")
    try:
        open_for_writing(path).close()
    except (JournalError, OSError, sqlite3.Error) as e:
        raise ConfigError(f"VOICED_JOURNAL: {e}") from None


def _check_google(settings: Settings, environ: Mapping[str, str]) -> None:
    from voiced.google.credentials import check_credentials
    from voiced.google.endpoint import check_endpoint

    check_endpoint(settings)
    check_credentials(settings, environ)


def _check_language(settings: Settings) -> list[str]:
    """What the caller's language needs: a Google model that serves it (or one line and
    exit 1), and voiced's own phrases in it (or a warning naming what stays English)."""
    from voiced.agent.dialog import builtin_dialog_name
    from voiced.google.models import refusal
    from voiced.language import primary
    from voiced.phrases import FALLBACK_LANGUAGE, CatalogError

    s = settings
    warnings = []
    refused = refusal(s.google_stt_model, s.language) if "google" in s.stt_engines else None
    if refused is not None:
        known, reason = refused
        line = f"VOICED_STT_MODEL={s.google_stt_model} with VOICED_LANGUAGE={s.language}: {reason}"
        if known:
            raise ConfigError(line)
        warnings.append(line)  # Google's table grows: try it, and say what will happen if it is refused
    try:
        catalog = s.phrase_catalog()
    except CatalogError as e:
        raise ConfigError(f"VOICED_PHRASES_FILE: {e}") from None
    english = primary(s.language) == FALLBACK_LANGUAGE
    if catalog.source == FALLBACK_LANGUAGE and not english:
        warnings.append(f"VOICED_LANGUAGE={s.language}: voiced has no phrase catalog for it, so the phrases it says "
                        "itself (filler, apology, goodbyes) are English; add voiced/phrases/<language>.txt or set "
                        "VOICED_PHRASES_FILE")
    elif catalog.from_fallback:
        warnings.append(f"phrase catalog {catalog.source} lacks {', '.join(catalog.from_fallback)}: "
                        "those are said in English")
    if s.agent == "script" and not s.script and not english and builtin_dialog_name(s.language) is None:
        warnings.append(f"VOICED_LANGUAGE={s.language}: no built-in dialog in this language, so the script agent "
                        "answers in English; write one (VOICED_SCRIPT) or use VOICED_AGENT=openai")
    return warnings


def _warnings(settings: Settings) -> list[str]:
    warnings = []
    if "google" in settings.stt_engines and settings.stt_rollover_s >= GOOGLE_STREAM_LIMIT_S:
        warnings.append(
            f"VOICED_STT_ROLLOVER_S={settings.stt_rollover_s} is at or above Google's ~{GOOGLE_STREAM_LIMIT_S} s "
            "stream limit: streams will hit the limit before they are replaced; keep it below (default 240)"
        )
    if "google" in settings.stt_engines and settings.stt_rollover_s >= settings.google_timeout_s:
        warnings.append(
            f"VOICED_STT_ROLLOVER_S={settings.stt_rollover_s} is not below VOICED_GOOGLE_TIMEOUT_S="
            f"{settings.google_timeout_s}: streams will time out before they are replaced"
        )
    return warnings
