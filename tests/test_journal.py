"""The call journal: the SQLite schema and its durability settings, the writer thread,
the delivery outbox against a real loopback server, and voiced-records."""

import csv
import io
import json
import sqlite3

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes.http_apps import Canned, RecordingApp, make_http_client, start_server
from tests.testing.journal import a_record, columns, indexes, journal_path, schema_1_journal, user_version
from voiced.journal import cli, store
from voiced.journal.outbox import Outbox
from voiced.journal.writer import JournalWriter
from voiced.retry import Backoff
from voiced.signing import verify


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
        conn.execute(f"PRAGMA user_version={store.SCHEMA_VERSION + 1}")
        conn.close()
        for opener in (store.open_for_writing, store.open_read_only):
            e = self.assertRaises(store.JournalError, opener, path)
            self.assertIn(f"schema version {store.SCHEMA_VERSION + 1}, written by a newer voiced", str(e))
            self.assertIn(f"up to {store.SCHEMA_VERSION}", str(e))
        conn = sqlite3.connect(path)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], store.SCHEMA_VERSION + 1, "untouched")
        conn.close()

    def test_the_carrier_and_playout_are_columns_and_in_the_record(self):
        conn = store.open_for_writing(journal_path(self))
        store.write_call(conn, a_record("CAtw").as_json())
        store.write_call(conn, a_record("0d3c8e2a-audiosocket", carrier="asterisk", playout="local").as_json())
        conn.row_factory = sqlite3.Row
        rows = store.recent_calls(conn, 10)
        self.assertEqual([(r["call_sid"], r["carrier"], r["playout"]) for r in rows],
                         [("0d3c8e2a-audiosocket", "asterisk", "local"), ("CAtw", "twilio", "carrier")])
        self.assertEqual(json.loads(rows[0]["record"])["carrier"], "asterisk")
        self.assertEqual([r["call_sid"] for r in store.recent_calls(conn, 10, carrier="twilio")], ["CAtw"])
        self.assertEqual([r["call_sid"] for r in store.calls_since(conn, 0, carrier="asterisk")],
                         ["0d3c8e2a-audiosocket"])
        conn.close()

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


class MigrationTests(SynchronousTestCase):
    def test_a_schema_1_journal_is_migrated_in_place_its_calls_twilios(self):
        path = journal_path(self)
        schema_1_journal(path, [("CAone", 5.0), ("CAtwo", None)])
        conn = store.open_for_writing(path)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], store.SCHEMA_VERSION)
        conn.row_factory = sqlite3.Row
        rows = store.recent_calls(conn, 10)
        self.assertEqual([(r["call_sid"], r["carrier"], r["playout"], r["delivered_at"]) for r in rows],
                         [("CAtwo", "twilio", "carrier", None), ("CAone", "twilio", "carrier", 5.0)])
        migrated = json.loads(rows[1]["record"])
        self.assertEqual((migrated["carrier"], migrated["playout"]), ("twilio", "carrier"))
        self.assertEqual(migrated["turns"][1]["caller_text"], "caller says 2", "the rest of the record is kept")
        self.assertEqual([t["caller_text"] for t in store.turns_of(conn, rows[1]["id"])],
                         ["caller says 1", "caller says 2"])
        # Only the undelivered one is in the outbox, and what it will send names its carrier.
        self.assertEqual([(sid, json.loads(text)["carrier"]) for _, sid, text in store.undelivered(conn)],
                         [("CAtwo", "twilio")])
        store.write_call(conn, a_record("v3:telnyx-call", carrier="telnyx").as_json())
        self.assertEqual([r["carrier"] for r in store.recent_calls(conn, 10)], ["telnyx", "twilio", "twilio"])
        migrated_schema = (columns(conn, "calls"), columns(conn, "turns"), indexes(conn))
        conn.close()

        fresh = store.open_for_writing(journal_path(self))
        self.assertEqual((columns(fresh, "calls"), columns(fresh, "turns"), indexes(fresh)), migrated_schema,
                         "a migrated journal is the same schema as a new one")
        fresh.close()
        store.open_for_writing(path).close()  # opening it again changes nothing
        self.assertEqual(user_version(path), store.SCHEMA_VERSION)

    def test_a_failed_migration_leaves_schema_1_untouched(self):
        path = journal_path(self)
        # More calls than one batch of the record rewrite, the last one's record broken.
        schema_1_journal(path, [(f"CA{n}", None) for n in range(600)])
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("UPDATE calls SET record='{not json' WHERE call_sid='CA599'")
        conn.close()
        e = self.assertRaises(store.JournalError, store.open_for_writing, path)
        self.assertIn("cannot migrate schema 1 to 2", str(e))
        self.assertEqual(user_version(path), 1)
        conn = sqlite3.connect(path)
        self.assertEqual([c[1] for c in conn.execute("PRAGMA table_info(calls)")][-2:],
                         ["delivery_attempts", "last_delivery_error"], "no column was added")
        self.assertNotIn("carrier", conn.execute("SELECT record FROM calls WHERE call_sid='CA0'").fetchone()[0],
                         "the first batch's rewrite was rolled back too")
        conn.close()

    def test_read_only_reads_schema_1_as_twilio_without_migrating_it(self):
        path = journal_path(self)
        schema_1_journal(path, [("CAone", 5.0)])
        conn = store.open_read_only(path)
        self.assertEqual([(r["call_sid"], r["carrier"], r["playout"]) for r in store.recent_calls(conn, 10)],
                         [("CAone", "twilio", "carrier")])
        self.assertEqual(len(store.calls_by_sid(conn, "CAone")), 1)
        conn.close()
        self.assertEqual(user_version(path), 1)
        out = io.StringIO()
        self.assertEqual(cli.main(["--journal", path, "export", "--format", "jsonl", "--carrier", "twilio"], out), 0)
        exported = json.loads(out.getvalue())
        self.assertEqual((exported["call_sid"], exported["carrier"], exported["playout"]),
                         ("CAone", "twilio", "carrier"))
        self.assertEqual(user_version(path), 1)


def schema_3_journal(path, call_sid):
    """A journal as voiced wrote it before answering-machine detection (schema 3)."""
    conn = store.open_for_writing(path)
    conn.execute("BEGIN IMMEDIATE")
    for column in ("answered_by", "profile", "recording"):
        conn.execute(f"ALTER TABLE calls DROP COLUMN {column}")
    conn.execute("PRAGMA user_version=3")
    conn.execute("COMMIT")
    record = a_record(call_sid).as_json()
    del record["answered_by"], record["profile"], record["recording"]
    conn.execute(
        "INSERT INTO calls (call_sid, stream_sid, carrier, playout, from_number, to_number, parameters, started_at, "
        "ended_at, end_reason, turn_count, stt_retries, stt_failures, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (call_sid, "MZ1", "twilio", "carrier", "+15550001", "+15550002", "{}", 1000.0, 1012.5, "done", 0, 0, "[]",
         json.dumps(record)))
    conn.close()


def assert_migrated_keeps_new_calls(test, path, column, value):
    """An old journal (its one call CAold) opened for writing is migrated: a new call keeps
    ``column`` as ``value``, the old one reads it as ""."""
    conn = store.open_for_writing(path)
    test.assertEqual(user_version(path), store.SCHEMA_VERSION)
    record = a_record("CAnew")
    setattr(record, column, value)
    store.write_call(conn, record.as_json())
    conn.row_factory = sqlite3.Row
    test.assertEqual([(r["call_sid"], r[column]) for r in store.recent_calls(conn, 10)],
                     [("CAnew", value), ("CAold", "")])
    conn.close()


class AnsweredByTests(SynchronousTestCase):
    def test_an_outbound_calls_answered_by_is_kept_and_shown(self):
        path = journal_path(self)
        conn = store.open_for_writing(path)
        record = a_record("CAout")
        record.answered_by = "machine"
        store.write_call(conn, record.as_json())
        store.write_call(conn, a_record("CAin").as_json())
        conn.close()
        conn = store.open_read_only(path)
        self.assertEqual([(r["call_sid"], r["answered_by"]) for r in store.recent_calls(conn, 10)],
                         [("CAin", ""), ("CAout", "machine")])
        conn.close()
        out = io.StringIO()
        self.assertEqual(cli.main(["--journal", path, "show", "CAout"], out), 0)
        self.assertIn("answered by: machine", out.getvalue())
        out = io.StringIO()
        cli.main(["--journal", path, "show", "CAin"], out)
        self.assertNotIn("answered by", out.getvalue())
        out = io.StringIO()
        cli.main(["--journal", path, "export", "--format", "csv"], out)
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        self.assertEqual([r["answered_by"] for r in rows], ["machine", ""])

    def test_a_schema_3_journal_reads_and_migrates_with_nobody_asked(self):
        path = journal_path(self)
        schema_3_journal(path, "CAold")
        conn = store.open_read_only(path)
        self.assertEqual([r["answered_by"] for r in store.recent_calls(conn, 10)], [""])
        conn.close()
        self.assertEqual(user_version(path), 3)
        out = io.StringIO()
        self.assertEqual(cli.main(["--journal", path, "export", "--format", "jsonl"], out), 0)
        self.assertEqual(json.loads(out.getvalue())["answered_by"], "")
        assert_migrated_keeps_new_calls(self, path, "answered_by", "human")


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


AUDIOSOCKET_ID = "40325ec2-5efd-4bd3-805f-53576e581d13"  # Asterisk's call UUID: longer than a CallSid


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
        self.assertIn("carrier", lines[0])
        self.assertIn("CAnew", lines[1])
        self.assertIn("CAold", lines[2])
        self.assertIn("websocket closed code=1000", lines[2])
        self.assertIn("2 calls", lines[-1])
        self.assertEqual(lines[1].split()[2:4], ["twilio", "CAnew"])

    def add_asterisk_call(self):
        conn = store.open_for_writing(self.path)
        store.write_call(conn, a_record(AUDIOSOCKET_ID, started_at=2_000_000_100.0, carrier="asterisk",
                                        playout="local").as_json())
        conn.close()

    def test_list_by_carrier_with_the_whole_call_id(self):
        self.add_asterisk_call()
        code, text = self.run_cli("list", "--carrier", "asterisk")
        lines = text.splitlines()
        self.assertEqual((code, len(lines)), (0, 3))
        self.assertEqual(lines[1].split()[2:4], ["asterisk", AUDIOSOCKET_ID])
        self.assertIn("1 asterisk calls (of 3", lines[-1])
        self.assertIn("0 telnyx calls", self.run_cli("list", "--carrier", "telnyx")[1])

    def test_show_names_the_carrier_and_a_local_playout(self):
        self.add_asterisk_call()
        self.assertIn("call CAold  stream MZ1  carrier twilio\n", self.run_cli("show", "CAold")[1])
        self.assertIn("carrier asterisk  (heard: voiced's playout clock)", self.run_cli("show", AUDIOSOCKET_ID)[1])

    def test_csv_has_the_carrier_last_and_filters_by_it(self):
        self.add_asterisk_call()
        code, text = self.run_cli("export", "--format", "csv")
        rows = list(csv.DictReader(io.StringIO(text)))
        self.assertEqual(list(rows[0])[-4:], ["carrier", "playout", "answered_by", "recording"])
        self.assertEqual([(r["call_sid"], r["carrier"], r["playout"]) for r in rows],
                         [("CAold", "twilio", "carrier"), ("CAnew", "twilio", "carrier"),
                          (AUDIOSOCKET_ID, "asterisk", "local")])
        code, text = self.run_cli("export", "--format", "csv", "--carrier", "twilio")
        self.assertEqual([r["call_sid"] for r in csv.DictReader(io.StringIO(text))], ["CAold", "CAnew"])
        code, text = self.run_cli("export", "--carrier", "asterisk")
        self.assertEqual([json.loads(line)["carrier"] for line in text.splitlines()], ["asterisk"])

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


class ProfileColumnTests(SynchronousTestCase):
    """Schema 5 (issue 22): each call's profile, a column and a key of its record."""

    def schema_4_journal(self, path):
        conn = store.open_for_writing(path)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ALTER TABLE calls DROP COLUMN profile")
        conn.execute("ALTER TABLE calls DROP COLUMN recording")
        conn.execute("PRAGMA user_version=4")
        conn.execute("COMMIT")
        record = a_record("CAold").as_json()
        del record["profile"], record["recording"]
        conn.execute(
            "INSERT INTO calls (call_sid, stream_sid, carrier, playout, from_number, to_number, parameters, "
            "started_at, ended_at, end_reason, turn_count, stt_retries, stt_failures, record) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ("CAold", "MZ1", "twilio", "carrier", "+1", "+2", "{}", 1.0, 2.0, "", 0, 0, "[]", json.dumps(record)))
        conn.close()

    def test_a_call_is_written_with_its_profile(self):
        conn = store.open_for_writing(journal_path(self))
        record = a_record("CAhe")
        record.profile = "hebrew"
        store.write_call(conn, record.as_json())
        conn.row_factory = sqlite3.Row
        row = store.calls_by_sid(conn, "CAhe")[0]
        self.assertEqual((row["profile"], json.loads(row["record"])["profile"]), ("hebrew", "hebrew"))
        conn.close()

    def test_a_schema_4_journal_gets_an_empty_profile_for_its_old_calls(self):
        path = journal_path(self)
        self.schema_4_journal(path)
        reader = store.open_read_only(path)  # not migrated: it reads as the current schema
        self.assertEqual([r["profile"] for r in store.recent_calls(reader, 10)], [""])
        reader.close()
        self.assertEqual(user_version(path), 4)
        assert_migrated_keeps_new_calls(self, path, "profile", "english")
