"""What campaigns need of the Dialer (voiced.outbound.campaign_protocol.Dialer), against the
loopback Twilio REST fake and a real journal file: the dial is written before Twilio is asked,
a failure says whether Twilio surely created no call, and after a restart a dial is found
(``find_dial``) and its status read back (``dial_status``) from the journal and from Twilio's
``GET Calls.json`` / ``GET Calls/{Sid}.json``, checked against the official ``twilio`` package."""

from __future__ import annotations

from twilio.rest import Client as TwilioClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.fakes.http_apps import make_http_client, start_server
from tests.fakes.rest_control import FAST
from tests.fakes.twilio_rest import FakeTwilio
from tests.testing.journal import journal_path
from tests.testing.outbound import CarrierAtHand
from voiced.demo import free_port
from voiced.journal import dials
from voiced.journal.writer import JournalWriter
from voiced.outbound.dialer import Dialer, DialError
from voiced.outbound.request import DialRequest
from voiced.outbound.twilio_dial import TwilioDialer

ACCOUNT = "AC" + "ab" * 16
TOKEN = "tok-readback-1f2e"
PUBLIC = "https://voice.example.com"
KEY = ("c-0123456789abcdef", 7, 1)


class ReadBackTests(TestCase):
    timeout = 30

    async def setUp(self):
        self.twilio = FakeTwilio(ACCOUNT, TOKEN, connect=False)
        self.server = start_server(self, self.twilio)
        self.path = journal_path(self)
        self.writer = await self.open_journal()

    async def open_journal(self) -> JournalWriter:
        writer = JournalWriter(self.path, reactor)
        await writer.open()
        self.addCleanup(writer.close)
        return writer

    def twilio_dialer(self, api_base: str = "") -> TwilioDialer:
        return TwilioDialer(make_http_client(self), reactor, ACCOUNT, TOKEN, api_base or self.server.url("").rstrip("/"),
                            PUBLIC, TOKEN, 300, backoff=FAST)

    def dialer(self, writer: JournalWriter | None = None, api_base: str = "") -> Dialer:
        return Dialer(self.twilio_dialer(api_base), reactor, "+15550111", writer or self.writer)

    def campaign_request(self, to: str = "+15550100") -> DialRequest:
        return DialRequest(to, {"name": "Dana"}, campaign_id="/".join(map(str, KEY)))

    async def row(self, dial_id: str):
        return await self.writer.run(lambda conn: dials.dial(conn, dial_id))

    async def test_the_dial_is_written_before_the_carrier_is_asked(self):
        carrier = CarrierAtHand()
        dialer = Dialer(carrier, reactor, "+15550111", self.writer)
        dialed = dialer.dial(self.campaign_request())
        self.assertEqual(carrier.placed, [], "not before the journal has it")
        await self.writer.run(lambda conn: None)
        dial_id, _, _, placed = carrier.placed[0]
        row = await self.row(dial_id)
        self.assertEqual((row[2], row[5], row[6], row[7]), ("+15550100", "", "c-0123456789abcdef/7/1", "queued"))
        placed.callback("CAfirst")
        self.assertEqual(await dialed, dial_id)
        await self.writer.run(lambda conn: None)
        self.assertEqual((await self.row(dial_id))[5], "CAfirst")

    async def test_the_carrier_is_asked_only_when_the_campaigns_slot_comes(self):
        carrier = CarrierAtHand()
        dialer = Dialer(carrier, reactor, "+15550111", self.writer)
        slot: Deferred[None] = Deferred()
        asked: list[int] = []

        def ready() -> Deferred[None]:
            asked.append(len(carrier.placed))
            return slot

        dialer.dial(self.campaign_request(), ready)
        await self.writer.run(lambda conn: None)
        self.assertEqual((asked, carrier.placed), ([0], []), "written, then waiting for its slot")
        slot.callback(None)
        self.assertEqual(len(carrier.placed), 1)

    async def test_a_failure_is_retryable_only_when_twilio_surely_created_no_call(self):
        self.twilio.fail_with((400, {"code": 21211, "message": "bad number"}))
        refused = await self.assertFailure(self.dialer().dial(self.campaign_request()), DialError)
        self.assertFalse(refused.retryable)
        self.twilio.fail_with(503, 429, 503, 503)  # FAST: 3 attempts, all refused
        throttled = await self.assertFailure(self.dialer().dial(self.campaign_request()), DialError)
        self.assertTrue(throttled.retryable, str(throttled))
        self.twilio.fail_with(500)  # the call may exist: neither retried nor retryable
        errored = await self.assertFailure(self.dialer().dial(self.campaign_request()), DialError)
        self.assertFalse(errored.retryable)
        nobody = await self.assertFailure(self.dialer(api_base=f"http://127.0.0.1:{free_port()}").dial(
            self.campaign_request()), DialError)
        self.assertTrue(nobody.retryable, str(nobody))
        self.assertEqual(len(self.twilio.calls), 0)

    async def test_after_a_kill_before_twilios_answer_the_call_is_found_by_number_and_time(self):
        # A call a moment before, between the same numbers, already another dial's: not this one.
        await self.dialer().dial(DialRequest("+15550100"))
        dial_id = await self.dialer().dial(self.campaign_request())
        await self.writer.run(lambda conn: conn.execute("UPDATE dials SET call_sid='' WHERE dial_id=?", (dial_id,)))
        restarted = self.dialer()  # a new process: nothing in memory
        self.assertEqual(await restarted.find_dial(*KEY), dial_id)
        self.assertEqual((await self.row(dial_id))[5], self.twilio.calls[1].sid, "the CallSid is recorded")
        # Once found, its callbacks count: this process knows the dial now.
        self.assertTrue(restarted.status(dial_id, "ringing", call_sid=self.twilio.calls[1].sid))
        listed = [r for r in self.twilio.received if r.method == "GET" and "/Calls.json" in r.path]
        self.assertEqual(len(listed), 1)
        self.assertIn("To=%2B15550100", listed[0].path)
        self.assertIn("From=%2B15550111", listed[0].path)

    async def test_a_dial_twilio_never_had_is_none_and_a_key_never_written_is_none(self):
        dialer = self.dialer()
        self.assertIsNone(await dialer.find_dial("c-ffffffffffffffff", 1, 1))
        self.assertEqual(self.twilio.received, [], "never written, never asked for")
        self.twilio.fail_with(400)
        await self.assertFailure(dialer.dial(self.campaign_request()), DialError)
        self.assertIsNone(await self.dialer().find_dial(*KEY))

    async def test_an_unreachable_twilio_is_a_failure_not_a_none(self):
        dial_id = await self.dialer().dial(self.campaign_request())
        await self.writer.run(lambda conn: conn.execute("UPDATE dials SET call_sid='' WHERE dial_id=?", (dial_id,)))
        away = self.dialer(api_base=f"http://127.0.0.1:{free_port()}")
        await self.assertFailure(away.find_dial(*KEY), Exception)

    async def test_dial_status_reads_twilio_back_and_takes_the_dial_up_again(self):
        dial_id = await self.dialer().dial(self.campaign_request())
        self.twilio.calls[0].status = "busy"  # its callback was lost
        restarted = self.dialer()
        told: list[tuple[str, str]] = []
        restarted.add_status_listener(lambda d, s: told.append((d, s)))
        self.assertEqual(await restarted.dial_status(dial_id), "busy")
        self.assertEqual(told, [(dial_id, "busy")])
        await self.writer.run(lambda conn: None)
        self.assertEqual((await self.row(dial_id))[7], "busy")
        gets = len(self.twilio.received)
        self.assertEqual(await self.dialer().dial_status(dial_id), "busy", "final in the journal")
        self.assertEqual(len(self.twilio.received), gets, "a final status is not asked again")
        self.assertIsNone(await restarted.dial_status("d-ffffffffffffffff"))

    async def test_the_fakes_reads_are_what_the_twilio_package_reads(self):
        await self.dialer().dial(self.campaign_request())
        self.twilio.calls[0].started = self.twilio.calls[0].created
        self.twilio.calls[0].status = "in-progress"

        def read() -> tuple[str, list[str]]:
            client = TwilioClient(ACCOUNT, TOKEN)
            client.api.base_url = self.server.url("").rstrip("/")
            call = client.calls(self.twilio.calls[0].sid).fetch()
            found = client.calls.list(to="+15550100", from_="+15550111", start_time_after=call.date_created)
            return call.status, [c.sid for c in found]

        status, sids = await deferToThread(read)
        self.assertEqual((status, sids), ("in-progress", [self.twilio.calls[0].sid]))

    async def test_the_answering_machine_verdict_is_the_dials(self):
        dialer = self.dialer()
        dial_id = await dialer.dial(self.campaign_request())
        dialer.answered_by(dial_id, "machine")
        await self.writer.run(lambda conn: None)
        self.assertEqual((await self.row(dial_id))[8], "machine")
        self.assertEqual((await dialer.describe(dial_id))["answered_by"], "machine")

