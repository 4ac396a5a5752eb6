"""Whether a carrier takes calls: signed, open on loopback, or off.

With its secret set a carrier checks every request's signature and refuses the
unsigned (403 before any call state). Without it, it takes calls only while every
--listen endpoint is loopback (development, a tunnel, a PBX on the same machine), as
Twilio's media socket does without a token; reachable from other hosts, its routes
answer 403. Start-up logs every carrier's mode on one ``CARRIERS`` line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from voiced.config import Settings
from voiced.endpoints import loopback_only

if TYPE_CHECKING:
    from voiced.carrier.base import Carrier

log = Logger(namespace="voiced.carrier")

SIGNED, OPEN, OFF = "signed", "open", "off"


def carrier_mode(settings: Settings, secret: str) -> str:
    if secret:
        return SIGNED
    return OPEN if loopback_only(settings.listen) else OFF


def modes_line(carriers: "Iterable[Carrier]") -> str:
    """One start-up line for every carrier's mode (``twilio=signed telnyx=open ...``)."""
    return " ".join(f"{c.name}={c.mode}" for c in carriers)


class CarrierOff(Resource):
    """The routes of a carrier that is off: 403 with the reason, for any method and path."""

    isLeaf = True

    def __init__(self, name: str, secret_env: str) -> None:
        super().__init__()
        self.name = name
        self.secret_env = secret_env

    def render(self, request: Request) -> bytes:
        log.warn("CARRIER_OFF {carrier}: refused {method} {path} from {peer} (set {env})", carrier=self.name,
                 method=request.method.decode("ascii", "replace"), path=request.path.decode("utf-8", "replace")[:80],
                 peer=request.getClientAddress(), env=self.secret_env)
        request.setResponseCode(403)
        request.setHeader(b"content-type", b"text/plain")
        return f"{self.name} is not configured on this server ({self.secret_env})\n".encode()
