"""The carriers voiced-call can speak: one module each, one line each in ``_REGISTRY``.

A carrier is a ``CarrierWire`` class (``voiced.caller.carriers.base``); it is imported
only when a call asks for it, so ``voiced-call --help`` stays fast.
"""

from __future__ import annotations

import importlib

from voiced.caller.carriers.base import CarrierWire

_REGISTRY: dict[str, str] = {  # name -> "module:CarrierWire class", one line per carrier
    "twilio": "voiced.caller.carriers.twilio:TwilioStream",
    "telnyx": "voiced.caller.carriers.telnyx:TelnyxStream",
    "asterisk": "voiced.caller.carriers.asterisk:AsteriskWebSocket",
    "exotel": "voiced.caller.carriers.exotel:ExotelStream",
    "audiosocket": "voiced.caller.carriers.audiosocket:AudioSocketCall",
    "plivo": "voiced.caller.carriers.plivo:PlivoStream",
    "vonage": "voiced.caller.carriers.vonage:VonageStream",
}

DEFAULT_CARRIER = "twilio"


class UnknownCarrier(ValueError):
    pass


def carrier_names() -> list[str]:
    return sorted(_REGISTRY)


def carrier_wire(name: str) -> type[CarrierWire]:
    """The wire class registered as ``name``; UnknownCarrier names the registered ones."""
    target = _REGISTRY.get(name)
    if target is None:
        raise UnknownCarrier(f"unknown carrier {name!r} (known: {', '.join(carrier_names())})")
    module, _, attribute = target.partition(":")
    wire: type[CarrierWire] = getattr(importlib.import_module(module), attribute)
    return wire
