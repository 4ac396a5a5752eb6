"""The journal's schema 3: dials and their status history, each call's direction; a
schema-2 journal migrated in one transaction (or not at all); voiced-records showing a
dial's status history."""

from __future__ import annotations

import io
import json
import sqlite3

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.testing.journal import columns, indexes, journal_path, schema_1_journal, user_version
from tests.testing.outbound import CarrierAtHand
from voiced.agent.base import CallInfo
from voiced.call.record import CallRecord
from voiced.journal import cli, dials, store
from voiced.journal.writer import JournalWriter
from voiced.outbound.dialer import Dialer
from voiced.outbound.request import DialRequest


def schema_2_journal(path, calls):
    """A journal as the schema-2 voiced left it (schema 1, then its one migration)."""
    schema_1_journal(path, calls)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    store._MIGRATIONS[1](conn)
    conn.execute("PRAGMA user_version=2")
    conn.execute("COMMIT")
    conn.close()


def outbound_record(call_sid="CAout", dial_id="d-0123456789abcdef"):
    info = CallInfo(call_sid, "MZ9", "+15550111", "+15550100", {"voiced_dial": dial_id}, direction="outbound",
                    variables={"name": "Dana"}, dial_id=dial_id)
    record = CallRecord.begin(info, 2000.0)
    record.ended_at, record.end_reason = 2010.0, "websocket closed code=1000"
    return record


class MigrationTests(SynchronousTestCase):
    def test_a_schema_2_journal_gains_dials_and_directions_in_place(self):
        path = journal_path(self)
        schema_2_journal(path, [("CAone", 5.0), ("CAtwo", None)])
        conn = store.open_for_writing(path)
        conn.row_factory = sqlite3.Row
        self.assertEqual(user_version(path), store.SCHEMA_VERSION)
        rows = store.recent_calls(conn, 10)
        self.assertEqual([(r["call_sid"], r["direction"], r["dial_id"]) for r in rows],
                         [("CAtwo", "inbound", ""), ("CAone", "inbound", "")])
        self.assertEqual([json.loads(text)["direction"] for _, _, text in store.undelivered(conn)], ["inbound"])
        store.write_call(conn, outbound_record().as_json())
        self.assertEqual(store.calls_by_sid(conn, "CAout")[0]["direction"], "outbound")
        migrated = (columns(conn, "calls"), columns(conn, "dials"), columns(conn, "dial_events"), indexes(conn))
        conn.close()
        fresh = store.open_for_writing(journal_path(self))
        self.assertEqual((columns(fresh, "calls"), columns(fresh, "dials"), columns(fresh, "dial_events"),
                          indexes(fresh)), migrated, "a migrated journal is the same schema as a new one")
        fresh.close()

    def test_a_failed_migration_leaves_schema_2_untouched(self):
        path = journal_path(self)
        schema_2_journal(path, [(f"CA{n}", None) for n in range(600)])
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("UPDATE calls SET record='[1]' WHERE call_sid='CA599'")
        conn.close()
        e = self.assertRaises(store.JournalError, store.open_for_writing, path)
        self.assertIn("cannot migrate schema 2 to 3", str(e))
        self.assertEqual(user_version(path), 2)
        conn = sqlite3.connect(path)
        self.assertNotIn("direction", [c[1] for c in conn.execute("PRAGMA table_info(calls)")])
        self.assertIsNone(conn.execute("SELECT 1 FROM sqlite_master WHERE name='dials'").fetchone())
        self.assertNotIn("direction", conn.execute("SELECT record FROM calls WHERE call_sid='CA0'").fetchone()[0])
        conn.close()

    def test_read_only_reads_schema_2_as_inbound_calls_without_dials(self):
        path = journal_path(self)
        schema_2_journal(path, [("CAone", None)])
        conn = store.open_read_only(path)
        self.assertEqual([(r["call_sid"], r["direction"]) for r in store.recent_calls(conn, 5)], [("CAone", "inbound")])
        self.assertIsNone(dials.dial(conn, "d-0123456789abcdef"))
        self.assertEqual(dials.events(conn, "d-0123456789abcdef"), [])
        conn.close()
        out = io.StringIO()
        self.assertEqual(cli.main(["--journal", path, "show", "CAone"], out), 0)
        self.assertIn("call CAone  stream MZ1  carrier twilio\n", out.getvalue())
        self.assertEqual(user_version(path), 2)


class DialStatementsTests(SynchronousTestCase):
    def test_a_dial_its_events_and_voiced_records_show(self):
        path = journal_path(self)
        conn = store.open_for_writing(path)
        dial_id = "d-0123456789abcdef"
        dials.insert_dial(conn, {"dial_id": dial_id, "carrier": "twilio", "to": "+15550100", "from": "+15550111",
                                 "variables": {"name": "Dana"}, "call_sid": "CAout", "campaign_id": "",
                                 "status": "queued", "at": 2000.0})
        for n, status in enumerate(("initiated", "ringing", "answered", "completed"), 1):
            dials.add_event(conn, dial_id, status, 2000.0 + n, "duration_s=9" if status == "completed" else "", status)
        store.write_call(conn, outbound_record(dial_id=dial_id).as_json())
        self.assertEqual([e[0] for e in dials.events(conn, dial_id)],
                         ["queued", "initiated", "ringing", "answered", "completed"])
        conn.close()
        for key in (dial_id, "CAout"):
            out = io.StringIO()
            self.assertEqual(cli.main(["--journal", path, "show", key], out), 0)
            text = out.getvalue()
            self.assertIn(f"dial {dial_id}  twilio  to +15550100 from +15550111  call CAout  status completed", text)
            self.assertIn('variables {"name": "Dana"}', text)
            self.assertRegex(text, r"status history: \S+ queued, \S+ initiated, \S+ ringing, \S+ answered, "
                                   r"\S+ completed \(duration_s=9\)")
            self.assertIn("carrier twilio  outbound", text)


class DialerJournalTests(TestCase):
    timeout = 30

    async def dialer_on_a_journal(self) -> tuple[JournalWriter, CarrierAtHand, Dialer]:
        """A dialer writing to a new journal, on a carrier the test answers for."""
        writer = JournalWriter(journal_path(self), reactor)
        await writer.open()
        self.addCleanup(writer.close)
        carrier = CarrierAtHand()
        return writer, carrier, Dialer(carrier, reactor, "+15550111", writer)

    async def test_the_dialer_writes_the_dial_and_each_status_and_reads_it_back_when_forgotten(self):
        writer, carrier, dialer = await self.dialer_on_a_journal()
        dialed = dialer.dial(DialRequest("+15550100", {"name": "Dana"}))
        await writer.run(lambda conn: None)  # the dial is written before the carrier is asked
        self.assertEqual(len(carrier.placed), 1)
        dial_id, _, _, placed = carrier.placed[0]
        placed.callback("CAout")
        await dialed
        for status in ("initiated", "ringing", "answered", "completed"):
            dialer.status(dial_id, status, call_sid="CAout")
        await writer.run(lambda conn: None)  # everything asked before has run
        dialer._dials.clear()  # long ago: only the journal knows it now
        view = await dialer.describe(dial_id)
        self.assertEqual([h["status"] for h in view["history"]],
                         ["queued", "initiated", "ringing", "answered", "completed"])
        self.assertEqual((view["status"], view["call_sid"], view["variables"]), ("completed", "CAout", {"name": "Dana"}))

    async def test_a_calls_answering_machine_verdict_reaches_its_dial_and_listeners(self):
        writer, carrier, dialer = await self.dialer_on_a_journal()
        heard = []
        dialer.add_answered_by_listener(lambda dial_id, who: heard.append((dial_id, who)))
        dialed = dialer.dial(DialRequest("+15550100", {}))
        await writer.run(lambda conn: None)  # the dial's row is written before the carrier is asked
        dial_id, _, _, placed = carrier.placed[0]
        placed.callback("CAout")
        await dialed
        record = outbound_record(dial_id=dial_id)
        dialer.call_event(record, "caller", {"number": 1, "text": "hello"})  # not a verdict
        dialer.call_event(outbound_record(dial_id=""), "answered", {"answered_by": "human", "source": "voiced"})
        dialer.call_event(record, "answered", {"answered_by": "machine", "source": "carrier"})
        await writer.run(lambda conn: None)
        self.assertEqual(heard, [(dial_id, "machine")])
        self.assertEqual(dialer.snapshot(dial_id)["answered_by"], "machine")
        dialer._dials.clear()
        self.assertEqual((await dialer.describe(dial_id))["answered_by"], "machine")
