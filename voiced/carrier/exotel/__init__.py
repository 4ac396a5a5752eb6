"""Exotel's Voicebot applet (AgentStream): the wire model (``wire``), the socket
(``protocol``), the applet URL's credentials (``auth``), the bot's audio cut to Exotel's
chunk rules (``chunks``), and hang-up and transfer through the stream (``control``).

Exotel asks voiced for no call instructions: the Voicebot applet of an Exotel flow is
configured with the ``wss://`` URL of ``/media/exotel`` itself, so there is no answer.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource

from voiced.carrier.base import CallCore, Carrier
from voiced.config import Settings

SECRET_ENV = "VOICED_EXOTEL_SECRET"


def carrier(core: CallCore, settings: Settings, console: Any = None) -> Carrier:
    from voiced.carrier.exotel.control import ExotelCallControl, ExotelStreams
    from voiced.carrier.exotel.protocol import ExotelAdmission, ExotelMediaStreamFactory
    from voiced.carrier.gate import OFF, CarrierOff, carrier_mode

    secret = settings.exotel_secret
    mode = carrier_mode(settings, secret)
    if mode == OFF:
        return Carrier("exotel", media=CarrierOff("exotel", SECRET_ENV), mode=OFF)
    streams = ExotelStreams()
    factory = ExotelMediaStreamFactory(core, ExotelAdmission(secret, streams))

    def control(http: Any, clock: Any) -> ExotelCallControl:
        return ExotelCallControl(streams)

    return Carrier("exotel", media=WebSocketResource(factory), control=control, mode=mode)
