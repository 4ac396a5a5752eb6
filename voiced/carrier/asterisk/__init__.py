"""Asterisk's WebSocket channel (chan_websocket, Asterisk 20.16 / 21.11 / 22.6 / 23 and
later): the control messages (``wire``), the socket at ``/media/asterisk`` (``protocol``),
the shared secret it presents (``admission``) and the pacing of the bot's audio into
Asterisk's queue (``sender``). Asterisk dials voiced from its dialplan, so there is no
HTTP answer, and no REST control: the bot hangs up with HANGUP on the socket."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource

from voiced.carrier.base import CallCore, Carrier
from voiced.carrier.gate import OFF, CarrierOff, carrier_mode
from voiced.config import Settings


def carrier(core: CallCore, settings: Settings, console: Any = None) -> Carrier:
    from voiced.carrier.asterisk.protocol import CARRIER, SECRET_ENV, AsteriskAdmission, AsteriskMediaFactory

    secret = settings.asterisk_secret
    mode = carrier_mode(settings, secret)
    if mode == OFF:
        media: Any = CarrierOff(CARRIER, SECRET_ENV)
    else:
        media = WebSocketResource(AsteriskMediaFactory(core, AsteriskAdmission(secret)))
    return Carrier(CARRIER, media=media, mode=mode)
