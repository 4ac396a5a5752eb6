"""Where the carriers' routes are mounted (voiced.web.mount): Twilio's historic /media and
/twiml beside every other carrier's /media/<name> and /answer/<name>."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from voiced.carrier.base import Carrier
from voiced.web import Branch, build_site


class Named(Resource):
    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class MountTests(SynchronousTestCase):
    def resolve(self, site, path: str) -> str:
        request = DummyRequest([part.encode() for part in path.lstrip("/").split("/")])
        resource = site.getResourceFor(request)
        if isinstance(resource, Branch):  # a route with children renders its own resource
            resource = resource.default
        return getattr(resource, "name", type(resource).__name__)

    def test_each_carrier_at_its_own_path_and_twilio_at_its_old_ones(self) -> None:
        carriers = [
            Carrier("telnyx", media=Named("telnyx media"), answer=Named("texml")),
            Carrier("twilio", media=Named("twilio media"), answer=Named("twiml"), media_at="media", answer_at="twiml"),
            Carrier("asterisk", media=Named("asterisk media")),
            Carrier("audiosocket"),  # its own TCP endpoint: nothing on the site
        ]
        site = build_site(None, carriers, with_admin=False)  # type: ignore[arg-type]
        self.assertEqual(self.resolve(site, "/media"), "twilio media")
        self.assertEqual(self.resolve(site, "/media/"), "twilio media")
        self.assertEqual(self.resolve(site, "/media/telnyx"), "telnyx media")
        self.assertEqual(self.resolve(site, "/media/asterisk"), "asterisk media")
        self.assertEqual(self.resolve(site, "/twiml"), "twiml")
        self.assertEqual(self.resolve(site, "/answer/telnyx"), "texml")
        self.assertEqual(self.resolve(site, "/media/audiosocket"), "_UnsafeNoResource")  # a 404
        self.assertEqual(self.resolve(site, "/answer/asterisk"), "_UnsafeNoResource")  # a 404
