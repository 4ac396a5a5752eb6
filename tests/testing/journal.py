"""The call journal's files: records, a fresh path, and a journal as schema 1 left it (migration tests)."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile

from voiced.agent.base import CallInfo
from voiced.call.record import CallRecord, TurnRecord


def a_record(call_sid="CA1", turns=2, started_at=1000.0, carrier="twilio", playout="carrier"):
    record = CallRecord.begin(CallInfo(call_sid, "MZ1", "+15550001", "+15550002",
                                       {"From": "+15550001", "To": "+15550002", "tier": "gold"}, carrier=carrier),
                              started_at, playout)
    for n in range(1, turns + 1):
        record.turns.append(TurnRecord(n, f"caller says {n}", reply_text=f"bot says {n}", heard_text=f"bot says {n}",
                                       metrics={"STT_FINAL_MS": 300 + n, "TOTAL_LATENCY_MS": 500 + n}))
    record.ended_at = started_at + 12.5
    record.end_reason = "websocket closed code=1000"
    return record


def journal_path(test):
    directory = tempfile.mkdtemp(prefix="voiced-journal-")
    return os.path.join(directory, "calls.db")


# Schema 1 as voiced wrote it before carriers (a copy, not store's: the fixture must not
# change when the code does).
SCHEMA_1_DDL = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    call_sid TEXT NOT NULL,
    stream_sid TEXT NOT NULL,
    from_number TEXT NOT NULL,
    to_number TEXT NOT NULL,
    parameters TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    end_reason TEXT NOT NULL,
    turn_count INTEGER NOT NULL,
    stt_retries INTEGER NOT NULL,
    stt_failures TEXT NOT NULL,
    record TEXT NOT NULL,
    delivered_at REAL,
    delivery_attempts INTEGER NOT NULL DEFAULT 0,
    last_delivery_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS calls_by_sid ON calls (call_sid);
CREATE INDEX IF NOT EXISTS calls_by_end ON calls (ended_at);
CREATE INDEX IF NOT EXISTS calls_undelivered ON calls (id) WHERE delivered_at IS NULL;
CREATE TABLE IF NOT EXISTS turns (
    call_id INTEGER NOT NULL REFERENCES calls (id),
    seq INTEGER NOT NULL,
    number INTEGER NOT NULL,
    caller_text TEXT NOT NULL,
    event TEXT,
    reply_text TEXT NOT NULL,
    heard_text TEXT NOT NULL,
    interrupted INTEGER NOT NULL,
    actions TEXT NOT NULL,
    filler INTEGER NOT NULL,
    agent_error TEXT NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (call_id, seq)
);
"""


def schema_1_journal(path, calls):
    """A journal as the schema-1 voiced left it: its DDL, its statements, its records
    (which had no carrier nor playout). ``calls`` are (call_sid, delivered_at)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA_1_DDL} PRAGMA user_version=1; COMMIT;")
    for call_sid, delivered_at in calls:
        record = a_record(call_sid).as_json()
        del record["carrier"], record["playout"]
        del record["direction"], record["dial_id"]  # schema 3's
        turns = record["turns"]
        cursor = conn.execute(
            "INSERT INTO calls (call_sid, stream_sid, from_number, to_number, parameters, started_at, ended_at, "
            "end_reason, turn_count, stt_retries, stt_failures, record, delivered_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (record["call_sid"], record["stream_sid"], record["from_number"], record["to_number"],
             json.dumps(record["parameters"]), record["started_at"], record["ended_at"], record["end_reason"],
             len(turns), record["stt_retries"], json.dumps(record["stt_failures"]), json.dumps(record),
             delivered_at))
        conn.executemany(
            "INSERT INTO turns (call_id, seq, number, caller_text, event, reply_text, heard_text, interrupted, "
            "actions, filler, agent_error, metrics) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(cursor.lastrowid, seq, t["number"], t["caller_text"], None, t["reply_text"], t["heard_text"],
              int(t["interrupted"]), json.dumps(t["actions"]), int(t["filler"]), t["agent_error"],
              json.dumps(t["metrics"])) for seq, t in enumerate(turns)])
    conn.close()


def user_version(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def columns(conn, table):
    return [(c[1], c[2], c[3], c[4]) for c in conn.execute(f"PRAGMA table_info({table})")]


def indexes(conn):
    return sorted(r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"))
