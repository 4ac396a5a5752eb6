"""The service owns its campaigns only when they can keep their promise (a journal to queue in,
a dialer, one process), mounts ``/campaigns`` beside ``/calls`` (503 with the reason otherwise),
and passes an outbound call's answering-machine verdict to its dial and its campaign."""

from __future__ import annotations

import json
import os
import tempfile

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from tests.testing.outbound import CarrierAtHand
from voiced.config import Settings
from voiced.journal.writer import JournalWriter
from voiced.outbound.campaigns import Campaigns
from voiced.outbound.dialer import Dialer
from voiced.outbound.request import DialRequest
from voiced.service import VoicedService
from voiced.web import add_admin_routes

ADMIN = "admin-token-wiring"


def service(**env: str) -> VoicedService:
    journal = os.path.join(tempfile.mkdtemp(prefix="voiced-wiring-"), "journal.db")
    settings = Settings.load({}, {"VOICED_ADMIN_TOKEN": ADMIN, "VOICED_JOURNAL": journal, **env})
    made = VoicedService(settings, reactor=Clock())
    made.journal = JournalWriter(journal, made.clock)  # as _start_journal makes it; not opened here
    made.dialer = Dialer(CarrierAtHand(), made.clock, "+15550111")
    return made


class RecordingCampaigns:
    def __init__(self) -> None:
        self.verdicts: list[tuple[str, str]] = []

    def on_answered_by(self, dial_id: str, answered_by: str) -> None:
        self.verdicts.append((dial_id, answered_by))


class CampaignWiringTests(SynchronousTestCase):
    def test_one_process_with_a_journal_and_a_dialer_has_campaigns(self):
        one = service()
        one._build_campaigns()
        self.assertIsInstance(one.campaigns, Campaigns)

    def test_without_any_of_them_there_are_none_and_the_route_says_why(self):
        workers = service(VOICED_WORKERS="2")
        no_dialer = service()
        no_dialer.dialer = None
        for made in (workers, no_dialer):
            made._build_campaigns()
            self.assertIsNone(made.campaigns)
        root = add_admin_routes(Resource(), workers)
        request = DummyRequest([b"c-0123456789abcdef"])
        request.method = b"GET"
        request.requestHeaders.addRawHeader(b"authorization", f"Bearer {ADMIN}".encode())
        body = root.children[b"campaigns"].render(request)
        self.assertEqual(request.responseCode, 503)
        self.assertIn("--workers 1", json.loads(body)["error"])

    def test_an_answering_machine_verdict_reaches_the_dial_and_the_campaign(self):
        made = service()
        made.campaigns = RecordingCampaigns()
        made.dialer.add_answered_by_listener(made.campaigns.on_answered_by)  # as _build_campaigns does
        dialled = made.dialer.dial(DialRequest("+15550100"))
        dial_id, _, _, placed = made.dialer.carrier.placed[0]
        placed.callback("CA1")
        self.assertEqual(self.successResultOf(dialled), dial_id)
        made.dialer.answered_by(dial_id, "machine")
        self.assertEqual(made.campaigns.verdicts, [(dial_id, "machine")])
        self.assertEqual(made.dialer.snapshot(dial_id)["answered_by"], "machine")
