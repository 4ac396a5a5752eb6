"""Outbound dialing: a carrier dialer whose every placement the test answers."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from voiced.outbound.request import DialRequest
from twisted.web.resource import Resource


class CarrierAtHand:
    """A CarrierDialer whose every placement the test answers."""

    carrier = "twilio"

    def __init__(self):
        self.placed: list[tuple[str, DialRequest, str, Deferred]] = []

    def place(self, dial_id, request, from_number):
        d = Deferred()
        self.placed.append((dial_id, request, from_number, d))
        return d


class Root(Resource):
    """A site root the routes mount on (a test server stops it as it stops a site)."""

    def stop(self):
        pass
