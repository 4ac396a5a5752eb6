"""Twilio Media Streams (and SignalWire, which speaks the same protocol): the wire model
(``wire``), the socket (``protocol``), signatures (``signature``), the TwiML answer
(``answer``) and the REST control for hang-up and transfer (``rest``)."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource

from voiced.carrier.base import CallCore, Carrier
from voiced.config import Settings


def carrier(core: CallCore, settings: Settings, console: Any = None) -> Carrier:
    from voiced.carrier.twilio.answer import TwimlAnswer
    from voiced.carrier.twilio.protocol import TwilioAdmission, TwilioMediaStreamFactory

    token = settings.twilio_auth_token
    factory = TwilioMediaStreamFactory(core, TwilioAdmission(token, settings.public_host, console))
    def rest_control(http: Any, clock: Any) -> Any:
        from voiced.carrier.twilio.rest import TwilioCallControl

        return TwilioCallControl(http, clock, settings.twilio_account_sid, settings.twilio_rest_token,
                                 api_base=settings.twilio_api_base)

    warnings = [] if token else ["X-Twilio-Signature is not checked (no VOICED_TWILIO_AUTH_TOKEN): anyone who "
                                 "reaches this port can place calls"]
    return Carrier("twilio", media=WebSocketResource(factory),
                   answer=TwimlAnswer(token, settings.public_host, core.clock, settings.media_token_ttl_s),
                   control=rest_control if settings.twilio_rest_configured else None,
                   mode="signed" if token else "unsigned", warnings=warnings,
                   media_at="media", answer_at="twiml")  # where Twilio's numbers have always pointed
