"""Asterisk AudioSocket: plain TCP on its own endpoint (``--audiosocket-listen``), one
connection per call, opened by Asterisk's ``AudioSocket()`` application or its
``AudioSocket`` channel. The frames (``wire``), the connection (``protocol``) and the
call UUIDs signed with ``audiosocket_secret`` (``call_uuid``). No HTTP answer and no
REST control: the dialplan starts the stream, and the connection is the call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voiced.carrier.base import CallCore, Carrier
from voiced.carrier.gate import OFF, OPEN, SIGNED
from voiced.endpoints import is_loopback_endpoint

if TYPE_CHECKING:
    from voiced.config import Settings

OPTION = "--audiosocket-listen"
SECRET_ENV = "VOICED_AUDIOSOCKET_SECRET"


def mode(endpoint: str, secret: str) -> str:
    """Signed with a secret; without one, open only on a loopback endpoint (Asterisk on the
    same machine), else off: every connection refused."""
    if secret:
        return SIGNED
    return OPEN if is_loopback_endpoint(endpoint) else OFF


def carrier(core: CallCore, settings: "Settings", console: Any = None) -> Carrier:
    endpoint, secret = settings.audiosocket_listen, settings.audiosocket_secret
    if not endpoint:
        warnings = [f"audiosocket_secret is set but {OPTION} is not: AudioSocket is off"] if secret else []
        return Carrier("audiosocket", mode=OFF, warnings=warnings)
    from voiced.carrier.audiosocket.protocol import AudioSocketAdmission, AudioSocketFactory

    how = mode(endpoint, secret)
    factory = AudioSocketFactory(core, AudioSocketAdmission(secret, how))
    warnings = []
    if how == OFF:  # listening where it refuses every connection is a mistake worth a warning
        warnings.append(f"AudioSocket is off: {OPTION} {endpoint} is reachable from other hosts and {SECRET_ENV} "
                        f"is not set (every connection gets an error frame)")
    return Carrier("audiosocket", listeners=[(OPTION, endpoint, factory)], mode=how, warnings=warnings)
