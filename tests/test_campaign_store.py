"""Campaigns in the journal: a kill half-way (the objects dropped, no stopService) and a fresh
Campaigns over the same SQLite file resume exactly the unfinished rows, none dialled twice."""

from __future__ import annotations

import os
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes.campaign_dialer import HOLD, LOST
from tests.testing.campaigns import Harness, rows
from voiced.journal.writer import JournalWriter
from voiced.outbound import campaign_store
from voiced.outbound.campaign import LOOKUP_RETRY_S
from voiced.outbound.campaign_settings import CampaignError, CampaignSettings
from voiced.outbound.campaign_store import CampaignStore, journal_runner


def number(row_no: int) -> str:
    return f"+1555010{row_no:04d}"


def states(h: Harness, cid: str) -> dict[int, tuple[str, int, str, str]]:
    return {row_no: (state, attempts, "id" if dial_id else "", outcome) for row_no, state, attempts, dial_id, outcome
            in h.conn.execute("SELECT row_no, state, attempts, dial_id, outcome FROM campaign_rows "
                              "WHERE campaign_id=? ORDER BY row_no", (cid,))}


class RestartTests(SynchronousTestCase):
    def test_a_kill_half_way_loses_nothing_and_dials_nothing_twice(self):
        plans = {1: [(1.0, "completed")], 2: [(1.0, "busy")], 3: HOLD, 4: LOST, 5: [(0.5, "ringing")],
                 6: [(0.5, "ringing")], 7: [], 8: []}
        h = Harness(self, plan=lambda request: plans[int(request.to[-4:])])
        settings = CampaignSettings(concurrency=6, cps=100, retries=1, retry_delay_s=600)
        cid = h.create(settings, rows(10))
        h.run(2)
        carrier = h.carrier
        self.assertEqual(states(h, cid), {
            1: ("done", 1, "id", "answered"),
            2: ("pending", 1, "", "busy"),  # its retry is due 600 s after the busy
            3: ("dialling", 1, "", ""),  # the carrier created it; its answer never came back
            4: ("dialling", 1, "", ""),  # the request never reached the carrier
            5: ("active", 1, "id", ""), 6: ("active", 1, "id", ""), 7: ("active", 1, "id", ""),
            8: ("active", 1, "id", ""),
            9: ("pending", 0, "", ""), 10: ("pending", 0, "", "")})
        self.assertEqual(len(h.dialer.requests), 8)
        # The kill: no stopService, the objects are simply gone. While the daemon is down,
        # row 6's call ends (its status callback finds no one); the others are still live.
        killed_at, path = h.clock.seconds(), h.path
        del h
        call_of = {int(c.request.to[-4:]): c for c in carrier.calls.values()}
        call_of[6].status = "no-answer"

        h = Harness(self, plan=lambda request: [(2.0, "completed")], start=killed_at + 5, path=path,
                    carrier=carrier)
        # Started (after the warm-up): row 3 was found at the carrier (not dialled again), row 4
        # was not (dialled now, as attempt 1), row 6's end was asked for (busy: its retry waits).
        self.assertEqual([r.to for _, r in h.dialer.requests], [number(4), number(9)])
        self.assertEqual(states(h, cid)[3], ("active", 1, "id", ""))
        self.assertEqual(states(h, cid)[6], ("pending", 1, "", "no-answer"))
        for row_no in (3, 5, 7, 8):
            h.dialer.report(call_of[row_no].dial_id, "completed")
        h.run(700)
        self.assertEqual(states(h, cid), {
            1: ("done", 1, "id", "answered"), 2: ("done", 2, "id", "answered"), 3: ("done", 1, "id", "answered"),
            4: ("done", 1, "id", "answered"), 5: ("done", 1, "id", "answered"), 6: ("done", 2, "id", "answered"),
            7: ("done", 1, "id", "answered"), 8: ("done", 1, "id", "answered"), 9: ("done", 1, "id", "answered"),
            10: ("done", 1, "id", "answered")})
        calls_per_number = {row_no: len(carrier.calls_to(number(row_no))) for row_no in range(1, 11)}
        self.assertEqual(calls_per_number, {n: 2 if n in (2, 6) else 1 for n in range(1, 11)},
                         "each number called once, twice only for its retry")
        progress = h.progress(cid)
        self.assertEqual((progress["state"], progress["retried"], progress["outcomes"]), ("done", 2, {"answered": 10}))

    def test_an_unreachable_carrier_is_asked_again_never_dialled_blindly(self):
        h = Harness(self, plan=lambda request: HOLD)
        cid = h.create(CampaignSettings(cps=100, retries=0), rows(1))
        path, carrier, killed_at = h.path, h.carrier, h.clock.seconds()
        del h
        h = Harness(self, plan=lambda request: [(1.0, "completed")], start=killed_at + 5, path=path, carrier=carrier,
                    unreachable=2)
        self.assertEqual(states(h, cid)[1], ("dialling", 1, "", ""), "not resolved while the carrier is down")
        h.clock.advance(LOOKUP_RETRY_S)
        self.assertEqual(states(h, cid)[1], ("dialling", 1, "", ""))
        h.clock.advance(LOOKUP_RETRY_S)
        self.assertEqual(states(h, cid)[1], ("active", 1, "id", ""), "found at the carrier: not dialled again")
        h.dialer.report(next(iter(carrier.calls)), "completed")
        self.assertEqual(states(h, cid)[1], ("done", 1, "id", "answered"))
        self.assertEqual((len(carrier.calls), h.dialer.requests), (1, []))

    def test_a_stopped_service_writes_nothing_and_resumes_alike(self):
        h = Harness(self, plan=lambda request: [(5.0, "completed")])
        cid = h.create(CampaignSettings(concurrency=2, cps=100), rows(4))
        h.run(1)
        before = states(h, cid)
        h.campaigns.stop()
        h.run(10)  # the calls end while stopping: the journal keeps them active, the restart asks
        self.assertEqual(states(h, cid), before)
        again = Harness(self, plan=lambda request: [(5.0, "completed")], start=h.clock.seconds(), path=h.path,
                        carrier=h.carrier)
        again.run(20)
        self.assertEqual({n: v[:2] for n, v in states(again, cid).items()}, {n: ("done", 1) for n in range(1, 5)})
        self.assertEqual(len(h.carrier.calls), 4)

    def test_a_finished_campaign_is_not_resumed(self):
        h = Harness(self, plan=lambda request: [(1.0, "completed")])
        cid = h.create(CampaignSettings(cps=100), rows(2))
        h.run(3)
        self.assertEqual(h.progress(cid)["state"], "done")
        self.assertEqual(campaign_store.unfinished(h.conn), [])
        again = Harness(self, start=h.clock.seconds(), path=h.path, carrier=h.carrier)
        self.assertEqual(again.campaigns.running, {})


class LoadingTests(SynchronousTestCase):
    def test_batches_dial_as_they_come_and_a_repeated_batch_is_refused(self):
        h = Harness(self, plan=lambda request: [(1.0, "completed")])
        cid = h.create(CampaignSettings(cps=100, concurrency=5), rows(2), more=True)
        h.run(3)
        self.assertEqual(h.progress(cid)["state"], "loading", "not done: more rows are coming")
        more = rows(4)[2:]
        h._result(h.campaigns.append(cid, 3, more, more=False))
        e = self.assertRaises(CampaignError, h._result, h.campaigns.append(cid, 3, more, more=False))
        self.assertIn("takes no more rows", str(e))
        h.run(3)
        progress = h.progress(cid)
        self.assertEqual((progress["state"], progress["rows"], progress["outcomes"]), ("done", 4, {"answered": 4}))
        self.assertEqual(len(h.carrier.calls), 4)

    def test_a_batch_out_of_order_is_refused(self):
        h = Harness(self)
        cid = h.create(CampaignSettings(), rows(2), more=True)
        e = self.assertRaises(CampaignError, h._result, h.campaigns.append(cid, 2, rows(1), more=False))
        self.assertIn("first_row is 2, the campaign's next row is 3", str(e))


class WriterThreadTests(TestCase):
    def test_statements_run_on_the_journals_writer_thread(self):
        fd, path = tempfile.mkstemp(suffix=".sqlite3")
        os.close(fd)
        os.unlink(path)
        self.addCleanup(lambda: [os.unlink(p) for p in (path, path + "-wal", path + "-shm") if os.path.exists(p)])
        writer = JournalWriter(path, reactor)
        store = CampaignStore(journal_runner(writer))

        async def scenario() -> None:
            await writer.open()
            try:
                await store.create("c-1", 5.0, CampaignSettings(concurrency=3), rows(3), more=False)
                await store.mark_dialling("c-1", 2, 1)
                progress = await store.progress("c-1")
                self.assertEqual((progress["rows"], progress["in_flight"], progress["settings"]["concurrency"]),
                                 (3, 1, 3))
                self.assertEqual(await store.unfinished(), ["c-1"])
            finally:
                await writer.close()

        from twisted.internet.defer import Deferred
        return Deferred.fromCoroutine(scenario())
