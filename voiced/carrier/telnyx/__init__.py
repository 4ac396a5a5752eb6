"""Telnyx media streaming (TeXML ``<Connect><Stream bidirectionalMode="rtp">`` or Call
Control ``streaming_start``): the wire model (``wire``), the socket (``protocol``), the
Ed25519 webhook signatures (``signature``), the TeXML answer (``answer``) and the Call
Control REST API for hang-up and transfer (``rest``).

What is signed: Telnyx signs its webhooks (the TeXML answer request) with Ed25519, not
the media WebSocket. So with the public key set, the answer is checked and hands a
per-call media token to the stream, which ``start`` must bring back. The token is an
HMAC keyed by ``telnyx_media_secret`` (default: the API key): never by the public key,
which is public and so would let anyone mint tokens. With the public key set and
neither secret, the carrier stays off and says so at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voiced.carrier.base import CallCore, Carrier

if TYPE_CHECKING:
    from voiced.config import Settings

SECRET_ENV = "VOICED_TELNYX_PUBLIC_KEY"


def carrier(core: CallCore, settings: "Settings", console: Any = None) -> Carrier:
    from autobahn.twisted.resource import WebSocketResource

    from voiced.carrier.gate import OFF, CarrierOff, carrier_mode
    from voiced.carrier.telnyx.answer import TexmlAnswer
    from voiced.carrier.telnyx.protocol import TelnyxAdmission, TelnyxMediaStreamFactory
    from voiced.carrier.telnyx.signature import public_key

    mode = carrier_mode(settings, settings.telnyx_public_key)
    media_secret = settings.telnyx_media_secret or settings.telnyx_api_key
    warnings = []
    if settings.telnyx_public_key and not media_secret:
        mode = OFF
        warnings = ["Telnyx is off: VOICED_TELNYX_PUBLIC_KEY is set but neither VOICED_TELNYX_MEDIA_SECRET nor "
                    "VOICED_TELNYX_API_KEY is, and the media WebSocket (which Telnyx does not sign) needs a "
                    "secret for its per-call token (its routes answer 403)"]
    if mode == OFF:
        return Carrier("telnyx", media=CarrierOff("telnyx", SECRET_ENV), answer=CarrierOff("telnyx", SECRET_ENV),
                       mode=OFF, warnings=warnings)
    key = public_key(settings.telnyx_public_key) if settings.telnyx_public_key else None
    token_secret = media_secret if key is not None else ""  # open mode (loopback only) asks for no token
    factory = TelnyxMediaStreamFactory(core, TelnyxAdmission(token_secret, rest_hangup=bool(settings.telnyx_api_key)),
                                       url="ws://localhost/media/telnyx")
    def call_control(http: Any, clock: Any) -> Any:
        from voiced.carrier.telnyx.rest import TelnyxCallControl

        return TelnyxCallControl(http, clock, settings.telnyx_api_key, api_base=settings.telnyx_api_base)

    return Carrier("telnyx", media=WebSocketResource(factory),
                   answer=TexmlAnswer(key, token_secret, settings.public_host, core.clock, settings.media_token_ttl_s),
                   control=call_control if settings.telnyx_api_key else None, mode=mode,
                   warnings=warnings)
