"""Plivo Audio Streams: the wire model (``wire``), the socket (``protocol``), X-Plivo-Signature-V3
(``signature``), the Plivo XML answer (``answer``) and the REST control for hang-up and
transfer (``rest``). The answer is ``/answer/plivo``, the stream ``/media/plivo``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource

from voiced.carrier.base import CallCore, Carrier
from voiced.carrier.gate import OFF, CarrierOff, carrier_mode
from voiced.config import Settings

SECRET_ENV = "VOICED_PLIVO_AUTH_TOKEN"


def carrier(core: CallCore, settings: Settings, console: Any = None) -> Carrier:
    from voiced.carrier.plivo.answer import PlivoAnswer
    from voiced.carrier.plivo.protocol import PlivoAdmission, PlivoMediaStreamFactory

    token = settings.plivo_auth_token
    mode = carrier_mode(settings, token)
    warnings: list[str] = []
    if mode == OFF:
        off = CarrierOff("plivo", SECRET_ENV)
        return Carrier("plivo", media=off, answer=off, mode=OFF)
    if token and not settings.public_url:
        warnings.append("Plivo signatures are checked against the Host header's https:// URL (no VOICED_PUBLIC_URL): "
                        "behind a proxy that rewrites it, set VOICED_PUBLIC_URL")
    factory = PlivoMediaStreamFactory(core, PlivoAdmission(token, settings.plivo_content_type),
                                      url="ws://localhost/media/plivo")
    def dial_answered(dial_id: str, call_uuid: str) -> None:
        from voiced.outbound.plivo_dial import dial_answered as answered

        answered(core, dial_id, call_uuid)

    answer = PlivoAnswer(token, settings.public_url, core.clock, settings.media_token_ttl_s,
                         settings.plivo_content_type, dial_answered)
    def rest_control(http: Any, clock: Any) -> Any:
        from voiced.carrier.plivo.rest import PlivoCallControl

        return PlivoCallControl(http, clock, settings.plivo_auth_id, token, settings.public_url,
                                api_base=settings.plivo_api_base)

    control = None
    if settings.plivo_auth_id and token:
        if urlsplit(settings.plivo_api_base).scheme not in ("http", "https"):
            warnings.append(f"Plivo REST is off: plivo_api_base {settings.plivo_api_base!r} is not an http(s) URL")
        else:
            control = rest_control
    elif settings.plivo_auth_id:
        warnings.append("Plivo REST is off: plivo_auth_id needs plivo_auth_token (the bot's hang-up closes the "
                        "stream instead, and transfers fail)")
    return Carrier("plivo", media=WebSocketResource(factory), answer=answer, control=control, mode=mode,
                   warnings=warnings)

