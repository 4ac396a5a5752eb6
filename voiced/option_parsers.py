"""The option table's parsers (``voiced.options``): each turns an option's text, from the
command line or the environment, into its value, or raises ValueError saying what is wrong."""

from __future__ import annotations

import re
from typing import Callable


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


def _float_range(low: float, high: float) -> Callable[[str], float | None]:
    def parse(value: str) -> float | None:
        if not value.strip():
            return None  # unset: the server's default
        x = float(value)
        if not low <= x <= high:
            raise ValueError(f"{x} is outside {low}..{high}")
        return x

    return parse


def _dial_from(value: str) -> str:
    from voiced.outbound.request import check_number

    return check_number(value, "the caller id") if value.strip() else ""


def _targets(value: str) -> tuple[str, ...]:
    from voiced.transfer import check_transfer_target

    return tuple(check_transfer_target(t.strip()) for t in value.split(",") if t.strip())


def _fraction(value: str) -> float:
    x = float(value)
    if not 0 < x < 1:
        raise ValueError(f"{x} is not between 0 and 1")
    return x


def _str(value: str) -> str:
    return value


STT_ENGINES = ("local", "google", "deepgram")


def _engine_chain(value: str, engines: tuple[str, ...], example: str) -> list[str]:
    """auto, or the names of a fallback chain, each one of ``engines`` and named once."""
    names = [name.strip() for name in value.split(",")]
    if names == ["auto"]:
        return names
    for name in names:
        if name not in engines:
            raise ValueError(f"{name!r} is not one of auto, {', '.join(engines)} (or a comma-separated "
                             f"fallback chain of them, e.g. {example})")
    if len(set(names)) != len(names):
        raise ValueError(f"{value!r} names an engine twice")
    return names


def _stt_engines(value: str) -> str:
    """auto, one engine, or a fallback chain of them in order (deepgram,google): issue 22."""
    return ",".join(_engine_chain(value, STT_ENGINES, "deepgram,google"))


TTS_ENGINES = ("local", "google", "elevenlabs", "cartesia", "openai")


def _tts_engines(value: str) -> str:
    """auto, one engine, or a fallback chain of them in order (elevenlabs,google,local): issue 22.
    ``local`` (espeak) is the last resort behind every chain, so it can only come last."""
    names = _engine_chain(value, TTS_ENGINES, "elevenlabs,google,local")
    if "local" in names[:-1]:
        raise ValueError(f"{value!r}: local is the last resort of a chain; it can only come last")
    return ",".join(names)


def _ed25519_public_key(value: str) -> str:
    """A base64 Ed25519 public key (32 bytes), as Telnyx shows it; empty stays empty."""
    import base64
    import binascii

    value = value.strip()
    if not value:
        return value
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64 (copy the public key from Telnyx's Keys & Credentials)") from None
    if len(raw) != 32:
        raise ValueError(f"{len(raw)} bytes, not an Ed25519 public key's 32")
    return value


# language-[script-]region, the shapes Google and espeak take (en-US, he-IL, zh-Hant-TW, es-419).
_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-[A-Za-z0-9]{5,8})*$")


def _language(value: str) -> str:
    if not _BCP47.match(value):
        raise ValueError(f"{value!r} is not a BCP-47 language tag (e.g. en-US, he-IL)")
    return value


def _tcp_endpoint(value: str) -> str:
    """A tcp: or tcp6: endpoint, or "" (off): for a listener only plain TCP reaches (AudioSocket)."""
    if value and not value.startswith(("tcp:", "tcp6:")):
        raise ValueError(f"{value!r} is not a tcp: or tcp6: endpoint (e.g. tcp:9092:interface=10.0.0.5)")
    return value


def _dialplan_secret(value: str) -> str:
    """A secret an Asterisk dialplan can carry as it is: 16 or more letters, digits, '.', '_' or '-'."""
    if value and (len(value) < 16 or not re.fullmatch(r"[A-Za-z0-9._-]+", value)):
        raise ValueError("must be 16 or more letters, digits, '.', '_' or '-' (e.g. openssl rand -hex 24)")
    return value
