"""The journal's SQLite schema and the statements on it. Blocking: the daemon calls
this only on its one writer thread (``voiced.journal.writer``), the CLI directly.

Durability: WAL mode, so readers (``voiced-records``, a console) read while the daemon
writes, and ``synchronous=FULL``, so a committed call survives an OS crash or a power
loss, not only kill -9 (NORMAL would lose the last commits then). The cost is one
fsync per ended call, on the writer thread: a few per second at hundreds of calls.
One transaction per call: the call row and its turns are committed together or not
at all, so a crash never leaves half a record.

Schema version 1 (``PRAGMA user_version``)::

  calls(id INTEGER PRIMARY KEY, call_sid, stream_sid, from_number, to_number,
        parameters JSON, started_at REAL, ended_at REAL, end_reason, turn_count,
        stt_retries, stt_failures JSON, record JSON (the whole CallRecord),
        delivered_at REAL NULL (the outbox: NULL until the webhook took it),
        delivery_attempts, last_delivery_error)
  turns(call_id -> calls.id, seq, number, caller_text, event JSON, reply_text,
        heard_text, interrupted, actions JSON, filler, agent_error, metrics JSON)
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterator
from urllib.parse import quote

SCHEMA_VERSION = 1

_SCHEMA = """
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


class JournalError(Exception):
    """The journal cannot be used (a newer schema, not a database)."""


def open_for_writing(path: str, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating) the journal, in WAL mode with full durability, at the current schema."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread, timeout=10)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(f"{path} has schema version {version}; this voiced knows up to {SCHEMA_VERSION}")
        if version < SCHEMA_VERSION:
            # One transaction: a crash here leaves version 0 and no half schema.
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise JournalError(f"{path}: {e}") from None
    except Exception:
        conn.close()
        raise
    return conn


def open_read_only(path: str) -> sqlite3.Connection:
    """Open for reading only (``mode=ro``): safe beside the running daemon, never creates the file."""
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as e:
        conn.close()
        raise JournalError(f"{path}: {e}") from None
    if version != SCHEMA_VERSION:
        conn.close()
        raise JournalError(f"{path} has schema version {version}, not {SCHEMA_VERSION} (an empty journal is 0)")
    return conn


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def write_call(conn: sqlite3.Connection, record: dict[str, Any]) -> int:
    """Commit one ended call (``CallRecord.as_json()``) and its turns in one transaction; its row id."""
    turns = record.get("turns") or []
    conn.execute("BEGIN IMMEDIATE")
    try:
        cursor = conn.execute(
            "INSERT INTO calls (call_sid, stream_sid, from_number, to_number, parameters, started_at, ended_at, "
            "end_reason, turn_count, stt_retries, stt_failures, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (record["call_sid"], record["stream_sid"], record["from_number"], record["to_number"],
             _dumps(record["parameters"]), record["started_at"], record["ended_at"], record["end_reason"],
             len(turns), record["stt_retries"], _dumps(record["stt_failures"]), _dumps(record)))
        call_id = int(cursor.lastrowid or 0)
        conn.executemany(
            "INSERT INTO turns (call_id, seq, number, caller_text, event, reply_text, heard_text, interrupted, "
            "actions, filler, agent_error, metrics) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(call_id, seq, t["number"], t["caller_text"], _dumps(t["event"]) if t["event"] else None,
              t["reply_text"], t["heard_text"], int(t["interrupted"]), _dumps(t["actions"]), int(t["filler"]),
              t["agent_error"], _dumps(t["metrics"])) for seq, t in enumerate(turns)])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return call_id


def undelivered(conn: sqlite3.Connection, limit: int = 100, after_id: int = 0) -> list[tuple[int, str, str]]:
    """(row id, call sid, record JSON) of records the webhook has not taken yet, oldest first."""
    return conn.execute(
        "SELECT id, call_sid, record FROM calls WHERE delivered_at IS NULL AND id > ? ORDER BY id LIMIT ?",
        (after_id, limit)).fetchall()


def mark_delivered(conn: sqlite3.Connection, call_id: int, at: float) -> None:
    conn.execute("UPDATE calls SET delivered_at=?, delivery_attempts=delivery_attempts+1, last_delivery_error='' "
                 "WHERE id=?", (at, call_id))


def mark_failed(conn: sqlite3.Connection, call_id: int, error: str) -> None:
    conn.execute("UPDATE calls SET delivery_attempts=delivery_attempts+1, last_delivery_error=? WHERE id=?",
                 (error[:500], call_id))


def mark_for_redelivery(conn: sqlite3.Connection, call_sids: list[str] | None) -> int:
    """Put records back in the outbox (all of them when ``call_sids`` is None); how many."""
    if call_sids is None:
        cursor = conn.execute("UPDATE calls SET delivered_at=NULL WHERE delivered_at IS NOT NULL")
    else:
        marks = ",".join("?" * len(call_sids))
        cursor = conn.execute(f"UPDATE calls SET delivered_at=NULL WHERE call_sid IN ({marks})", call_sids)
    return cursor.rowcount


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM calls").fetchone()[0])


def recent_calls(conn: sqlite3.Connection, limit: int) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM calls ORDER BY id DESC LIMIT ?", (limit,)).fetchall()


def calls_by_sid(conn: sqlite3.Connection, call_sid: str) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM calls WHERE call_sid=? ORDER BY id", (call_sid,)).fetchall()


def calls_since(conn: sqlite3.Connection, since: float) -> Iterator[sqlite3.Row]:
    return conn.execute("SELECT * FROM calls WHERE ended_at >= ? ORDER BY id", (since,))


def turns_of(conn: sqlite3.Connection, call_id: int) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM turns WHERE call_id=? ORDER BY seq", (call_id,)).fetchall()
