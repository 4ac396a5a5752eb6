"""A recording in the call's record and the journal: the schema's ``recording`` column, its
migration, and what ``voiced-records`` says of it."""

from __future__ import annotations

import io
import os
import sqlite3
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from tests.testing.journal import a_record, journal_path, user_version
from voiced.journal import cli, store


def schema_2_journal(path: str) -> None:
    """A journal as schema 2 left it: a call without a recording column."""
    conn = store.open_for_writing(path)
    conn.execute("DROP TABLE turns")
    conn.execute("DROP TABLE calls")
    conn.close()
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in store._SCHEMA_1.split(";"):
        if statement.strip():
            conn.execute(statement)
    store._migrate_to_2(conn)
    conn.execute("PRAGMA user_version=2")
    conn.close()


class RecordingColumnTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = journal_path(self)
        self.wav = os.path.join(tempfile.mkdtemp(), "2026-01-01", "120000-CArec-abcdef.wav")
        os.makedirs(os.path.dirname(self.wav))
        open(self.wav, "wb").close()

    def write(self, call_sid: str, recording: str) -> None:
        record = a_record(call_sid)
        record.recording = recording
        conn = store.open_for_writing(self.path)
        store.write_call(conn, record.as_json())
        conn.close()

    def run_cli(self, *argv: str) -> str:
        out = io.StringIO()
        self.assertEqual(cli.main(["--journal", self.path, *argv], out), 0)
        return out.getvalue()

    def test_the_record_and_the_column_name_the_file(self) -> None:
        self.write("CArec", self.wav)
        self.write("CAplain", "")
        conn = store.open_read_only(self.path)
        rows = {r["call_sid"]: r for r in store.recent_calls(conn, 10)}
        conn.close()
        self.assertEqual((rows["CArec"]["recording"], rows["CAplain"]["recording"]), (self.wav, ""))

    def test_list_says_which_calls_are_recorded_and_show_prints_the_path(self) -> None:
        self.write("CArec", self.wav)
        self.write("CAplain", "")
        self.write("CAgone", self.wav + ".deleted.wav")
        lines = self.run_cli("list").splitlines()
        self.assertIn("recorded", lines[0])
        state = {line.split()[3]: line.split()[8] for line in lines[1:4]}
        self.assertEqual(state, {"CArec": "yes", "CAplain": "-", "CAgone": "deleted"})
        self.assertIn(f"  recording {self.wav}\n", self.run_cli("show", "CArec"))
        self.assertNotIn("recording", self.run_cli("show", "CAplain"))
        self.assertIn("(deleted: older than the retention)", self.run_cli("show", "CAgone"))
        self.assertIn(self.wav, self.run_cli("export", "--format", "csv"))

    def test_a_schema_2_journal_gains_the_column_and_reads_as_unrecorded_before(self) -> None:
        schema_2_journal(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("INSERT INTO calls (call_sid, stream_sid, from_number, to_number, parameters, started_at, "
                     "end_reason, turn_count, stt_retries, stt_failures, record) "
                     "VALUES ('CAv2', 'MZ', '', '', '{}', 1.0, 'x', 0, 0, '[]', '{}')")
        conn.close()
        self.assertIn("CAv2", self.run_cli("list"))  # read-only, before the daemon migrated it
        self.assertEqual(user_version(self.path), 2)
        self.write("CArec", self.wav)  # the daemon opens it: migrated
        self.assertEqual(user_version(self.path), store.SCHEMA_VERSION)
        conn = store.open_read_only(self.path)
        self.assertEqual({r["call_sid"]: r["recording"] for r in store.recent_calls(conn, 10)},
                         {"CAv2": "", "CArec": self.wav})
        conn.close()
