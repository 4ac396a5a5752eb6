"""The call journal: the SQLite schema and its durability settings, the writer thread,
the delivery outbox against a real loopback server, and voiced-records."""

import io
import json
import os
import sqlite3
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes.http_apps import Canned, RecordingApp, make_http_client, start_server
from voiced.agent.base import CallInfo
from voiced.call.record import CallRecord, TurnRecord
from voiced.journal import cli, store
from voiced.journal.outbox import Outbox
from voiced.journal.writer import JournalWriter
from voiced.retry import Backoff
from voiced.signing import verify


def a_record(call_sid="CA1", turns=2, started_at=1000.0):
    record = CallRecord.begin(CallInfo(call_sid, "MZ1", "+15550001", "+15550002",
                                       {"From": "+15550001", "To": "+15550002", "tier": "gold"}), started_at)
    for n in range(1, turns + 1):
        record.turns.append(TurnRecord(n, f"caller says {n}", reply_text=f"bot says {n}", heard_text=f"bot says {n}",
                                       metrics={"STT_FINAL_MS": 300 + n, "TOTAL_LATENCY_MS": 500 + n}))
    record.ended_at = started_at + 12.5
    record.end_reason = "websocket closed code=1000"
    return record


def journal_path(test):
    directory = tempfile.mkdtemp(prefix="voiced-journal-")
    return os.path.join(directory, "calls.db")


class StoreTests(SynchronousTestCase):
    def test_schema_wal_full_and_one_transaction_per_call(self):
        path = journal_path(self)
        conn = store.open_for_writing(path)
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(conn.execute("PRAGMA synchronous").fetchone()[0], 2)  # FULL
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], store.SCHEMA_VERSION)
        row_id = store.write_call(conn, a_record(turns=3).as_json())
        self.assertEqual([r[0] for r in conn.execute("SELECT number FROM turns WHERE call_id=?", (row_id,))],
                         [1, 2, 3])
        broken = a_record("CA2").as_json()
        broken["turns"][1]["metrics"] = object()  # fails half-way through: nothing of it is kept
        self.assertRaises(TypeError, store.write_call, conn, broken)
        self.assertEqual(store.count(conn), 1)
        self.assertEqual(conn.execute("SELECT count(*) FROM turns").fetchone()[0], 3)
        conn.close()

    def test_reopening_keeps_everything_and_a_newer_schema_is_refused(self):
        path = journal_path(self)
        conn = store.open_for_writing(path)
        store.write_call(conn, a_record().as_json())
        conn.close()
        conn = store.open_for_writing(path)
        self.assertEqual(store.count(conn), 1)
        conn.execute("PRAGMA user_version=99")
        conn.close()
        e = self.assertRaises(store.JournalError, store.open_for_writing, path)
        self.assertIn("schema version 99", str(e))

    def test_not_a_database(self):
        path = journal_path(self)
        with open(path, "w") as f:
            f.write("this is not sqlite\n" * 100)
        self.assertRaises(store.JournalError, store.open_for_writing, path)

    def test_read_only_connection_cannot_write(self):
        path = journal_path(self)
        store.open_for_writing(path).close()
        ro = store.open_read_only(path)
        self.assertRaises(sqlite3.OperationalError, ro.execute, "DELETE FROM calls")
        ro.close()

    def test_outbox_marks(self):
        conn = store.open_for_writing(journal_path(self))
        first = store.write_call(conn, a_record("CA1").as_json())
        second = store.write_call(conn, a_record("CA2").as_json())
        self.assertEqual([r[0] for r in store.undelivered(conn)], [first, second])
        store.mark_failed(conn, first, "HTTP 503")
        store.mark_delivered(conn, second, 5.0)
        self.assertEqual([r[0] for r in store.undelivered(conn)], [first])
        self.assertEqual(store.mark_for_redelivery(conn, ["CA2"]), 1)
        self.assertEqual([r[0] for r in store.undelivered(conn)], [first, second])
        conn.close()


class WriterAndOutboxTests(TestCase):
    timeout = 30

    async def open_writer(self, path):
        writer = JournalWriter(path, reactor)
        await writer.open()
        self.addCleanup(writer.close)
        return writer

    async def test_writer_commits_on_end_off_the_reactor_thread_and_close_flushes(self):
        path = journal_path(self)
        writer = JournalWriter(path, reactor)
        await writer.open()
        for n in range(5):
            writer.call_event(a_record(f"CA{n}"), "end", {})
        writer.call_event(a_record("CAlive"), "turn", {})  # only an ended call is committed
        await writer.close()
        conn = store.open_read_only(path)
        self.assertEqual([r["call_sid"] for r in store.recent_calls(conn, 10)], [f"CA{n}" for n in range(4, -1, -1)])
        conn.close()

    def make_outbox(self, writer, app, secret="s3cret", attempts=2):
        server = start_server(self, app)
        outbox = Outbox(writer, make_http_client(self), reactor, server.url("/records"), secret,
                        policy=Backoff(0.01, 0.02, attempts=attempts), sweep_interval_s=3600, timeout_s=5)
        self.addCleanup(outbox.stop)
        writer.on_commit = outbox.kick
        return outbox

    async def test_each_record_is_posted_signed_after_a_5xx_retry_and_marked_delivered(self):
        path = journal_path(self)
        writer = await self.open_writer(path)
        app = RecordingApp()
        app.answer(Canned(status=503), Canned(status=204))
        outbox = self.make_outbox(writer, app)
        await writer.commit(a_record("CAone"))
        received = await app.request(1)
        self.assertEqual(received.json()["call_sid"], "CAone")
        self.assertEqual(received.json()["turns"][0]["caller_text"], "caller says 1")
        self.assertTrue(verify("s3cret", received.body, received.headers["x-voiced-signature"]))
        while outbox.delivered < 1:
            await writer.count()  # a round trip through the writer thread
        self.assertEqual(await writer.undelivered(0, 10), [])

    async def test_undelivered_after_retries_stays_and_a_later_sweep_delivers_it(self):
        path = journal_path(self)
        writer = await self.open_writer(path)
        app = RecordingApp()
        app.answer(Canned(status=500), Canned(status=500), Canned(status=500))  # 1 try + 2 retries
        outbox = self.make_outbox(writer, app)
        await writer.commit(a_record("CAlater"))
        await app.request(2)
        while outbox.sweeping:
            await writer.count()
        self.assertTrue(self._attempted(path))
        self.assertEqual([r[1] for r in await writer.undelivered(0, 10)], ["CAlater"])
        app.answer(Canned(status=200))
        outbox.kick()  # the timed sweep (or a restart's first)
        await app.request(3)
        while outbox.delivered < 1:
            await writer.count()
        self.assertEqual(await writer.undelivered(0, 10), [])

    def _attempted(self, path):
        conn = store.open_read_only(path)
        try:
            return conn.execute("SELECT last_delivery_error FROM calls").fetchone()[0].startswith("HTTP 500")
        finally:
            conn.close()

    async def test_a_4xx_is_not_retried_and_does_not_block_the_next_record(self):
        path = journal_path(self)
        writer = await self.open_writer(path)
        app = RecordingApp()
        app.answer(Canned(status=400, body=b"bad record"), Canned(status=200))
        outbox = self.make_outbox(writer, app)
        writer.on_commit = None
        await writer.commit(a_record("CAbad"))
        await writer.commit(a_record("CAgood"))
        outbox.kick()
        await app.request(1)
        while outbox.delivered < 1:
            await writer.count()
        self.assertEqual([r[1] for r in await writer.undelivered(0, 10)], ["CAbad"])
        self.assertEqual(len(app.received), 2)


class CliTests(SynchronousTestCase):
    def setUp(self):
        self.path = journal_path(self)
        conn = store.open_for_writing(self.path)
        store.write_call(conn, a_record("CAold", started_at=1000.0).as_json())
        store.write_call(conn, a_record("CAnew", turns=1, started_at=2_000_000_000.0).as_json())
        conn.close()

    def run_cli(self, *argv):
        out = io.StringIO()
        code = cli.main(["--journal", self.path, *argv], out)
        return code, out.getvalue()

    def test_list(self):
        code, text = self.run_cli("list")
        self.assertEqual(code, 0)
        lines = text.splitlines()
        self.assertIn("CAnew", lines[1])
        self.assertIn("CAold", lines[2])
        self.assertIn("websocket closed code=1000", lines[2])
        self.assertIn("2 calls", lines[-1])

    def test_show_prints_the_transcript_with_latencies(self):
        code, text = self.run_cli("show", "CAold")
        self.assertEqual(code, 0)
        self.assertIn("caller: caller says 2", text)
        self.assertIn("bot:    bot says 2", text)
        self.assertIn("STT_FINAL_MS=302", text)
        self.assertIn('"tier": "gold"', text)
        self.assertEqual(self.run_cli("show", "CAnope")[0], 1)

    def test_export_jsonl_and_csv_since(self):
        code, text = self.run_cli("export", "--since", "2030-01-01", "--format", "jsonl")
        self.assertEqual([json.loads(line)["call_sid"] for line in text.splitlines()], ["CAnew"])
        code, text = self.run_cli("export", "--format", "csv")
        rows = text.splitlines()
        self.assertTrue(rows[0].startswith("call_sid,"))
        self.assertEqual(len(rows), 3)

    def test_since_forms(self):
        self.assertEqual(cli.parse_since("2h", now=10_000), 10_000 - 7200)
        self.assertEqual(cli.parse_since("1700000000"), 1700000000.0)

    def test_redeliver(self):
        conn = store.open_for_writing(self.path)
        store.mark_delivered(conn, 1, 5.0)
        conn.close()
        code, text = self.run_cli("redeliver", "CAold")
        self.assertEqual(code, 0)
        self.assertIn("1 records", text)
        conn = store.open_read_only(self.path)
        self.assertEqual(len(store.undelivered(conn)), 2)
        conn.close()

    def test_missing_journal_is_one_line(self):
        self.assertEqual(cli.main(["--journal", self.path + ".nope", "list"], io.StringIO()), 2)
