"""Vonage Voice API WebSockets: the wire model (``wire``), the socket (``protocol``), signed
webhooks (``signature``), the NCCO answer (``answer``) and the Voice API control for
hang-up and transfer (``rest``)."""

from __future__ import annotations

from typing import Any

from voiced.carrier.base import CallCore, Carrier
from voiced.carrier.gate import OFF, CarrierOff, carrier_mode
from voiced.config import Settings

NAME = "vonage"
SECRET_ENV = "VOICED_VONAGE_SIGNATURE_SECRET"


def carrier(core: CallCore, settings: Settings, console: Any = None) -> Carrier:
    from autobahn.twisted.resource import WebSocketResource

    from voiced.carrier.vonage.answer import NccoAnswer
    from voiced.carrier.vonage.protocol import VonageAdmission, VonageMediaStreamFactory

    secret = settings.vonage_signature_secret
    mode = carrier_mode(settings, secret)
    warnings: list[str] = []
    if mode == OFF:
        off = CarrierOff(NAME, SECRET_ENV)
        return Carrier(NAME, media=off, answer=off, mode=OFF)
    control, problem = _control(settings)
    if problem:
        warnings.append(problem)
    factory = VonageMediaStreamFactory(core, VonageAdmission(secret), url="ws://localhost/media/vonage")
    answer = NccoAnswer(secret, settings.public_host, core.clock, settings.media_token_ttl_s,
                        settings.vonage_sample_rate)
    return Carrier(NAME, media=WebSocketResource(factory), answer=answer, control=control,
                   mode=mode, warnings=warnings)


def _control(settings: Settings) -> tuple[Any, str]:
    """The Voice API control when the application id and its key are set (and the key reads),
    and the start-up warning when they are not usable; (None, "") when neither is set."""
    app_id, key_file = settings.vonage_application_id, settings.vonage_private_key_file
    if not app_id and not key_file:
        return None, ""
    if not (app_id and key_file):
        return None, ("Vonage transfer and REST hang-up are off: set both VOICED_VONAGE_APPLICATION_ID and "
                      "VOICED_VONAGE_PRIVATE_KEY_FILE")
    from voiced.carrier.vonage.rest import VonageCallControl, load_private_key

    try:
        with open(key_file, "rb") as f:
            key = load_private_key(f.read())
    except (OSError, ValueError, TypeError) as e:
        return None, f"Vonage transfer and REST hang-up are off: cannot use {key_file}: {e}"

    def control(http: Any, clock: Any) -> VonageCallControl:
        return VonageCallControl(http, clock, app_id, key, api_base=settings.vonage_api_base)

    return control, ""
