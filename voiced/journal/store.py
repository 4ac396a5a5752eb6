"""The journal's SQLite schema and the statements on it. Blocking: the daemon calls
this only on its one writer thread (``voiced.journal.writer``), the CLI directly.

Durability: WAL mode, so readers (``voiced-records``, a console) read while the daemon
writes, and ``synchronous=FULL``, so a committed call survives an OS crash or a power
loss, not only kill -9 (NORMAL would lose the last commits then). The cost is one
fsync per ended call, on the writer thread: a few per second at hundreds of calls.
One transaction per call: the call row and its turns are committed together or not
at all, so a crash never leaves half a record.

Schema version 5 (``PRAGMA user_version``)::

  calls(id INTEGER PRIMARY KEY, call_sid, stream_sid (the carrier's own call and
        stream ids, whatever the carrier), from_number, to_number,
        parameters JSON, started_at REAL, ended_at REAL, end_reason, turn_count,
        stt_retries, stt_failures JSON, record JSON (the whole CallRecord),
        delivered_at REAL NULL (the outbox: NULL until the webhook took it),
        delivery_attempts, last_delivery_error,
        carrier ("twilio", "telnyx", ...), playout ("carrier" | "local"),
        direction ("inbound" | "outbound"), dial_id (the dial that placed it, or ""),
        answered_by ("" | "human" | "machine" | "unknown": who took an outbound call),
        profile (--profiles: the call's profile, or ''),
        recording (the call's WAV file, "" when not recorded))
  turns(call_id -> calls.id, seq, number, caller_text, event JSON, reply_text,
        heard_text, interrupted, actions JSON, filler, agent_error, metrics JSON)
  dials(dial_id PK, carrier, to_number, from_number, variables JSON, call_sid,
        campaign_id, status, answered_by, created_at REAL, updated_at REAL)
  dial_events(dial_id -> dials.dial_id, status, at REAL, detail)
  campaigns(campaign_id PK, created_at REAL, settings JSON, state)
  campaign_rows(campaign_id, row_no, number, variables JSON, tz, state, attempts,
        next_at REAL, dial_id, outcome) (the campaign's queue: voiced.outbound.campaign_store)

Version 3 added ``profile`` at the end of ``calls`` (the call's profile, --profiles;
'' for a call without one).

A journal is built by its history: schema 1's DDL, then each migration in turn, so
a new journal and a migrated one are the same schema by construction. Version 2
added ``carrier`` and ``playout`` at the end of ``calls`` (every schema-1 call was
Twilio's, its playout the carrier's marks). Version 3 added outbound calls: the
``dials`` voiced placed with their status history (``voiced.journal.dials``), and each
call's ``direction`` and ``dial_id`` (every earlier call was inbound). Version 4 added
``answered_by`` (answering-machine detection on outbound calls; "" for every call before it),
5 ``profile`` (--profiles; "" before it), 6 ``recording`` (no call before it was recorded) and 7
the outbound campaigns' tables (``_migrate_to_7``).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable, Iterator
from urllib.parse import quote

SCHEMA_VERSION = 7

# Schema 1 exactly as it shipped: never edit it, add a migration.
_SCHEMA_1 = """
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


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE calls ADD COLUMN carrier TEXT NOT NULL DEFAULT 'twilio'")
    conn.execute("ALTER TABLE calls ADD COLUMN playout TEXT NOT NULL DEFAULT 'carrier'")
    conn.execute("CREATE INDEX IF NOT EXISTS calls_by_carrier ON calls (carrier, id)")
    _fill_records(conn, {"carrier": "twilio", "playout": "carrier"})


# Schema 3's new tables exactly as they shipped: never edit them, add a migration.
_SCHEMA_3_DIALS = """
CREATE TABLE IF NOT EXISTS dials (
    dial_id TEXT PRIMARY KEY,
    carrier TEXT NOT NULL,
    to_number TEXT NOT NULL,
    from_number TEXT NOT NULL,
    variables TEXT NOT NULL,
    call_sid TEXT NOT NULL DEFAULT '',
    campaign_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    answered_by TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dials_by_sid ON dials (call_sid);
CREATE TABLE IF NOT EXISTS dial_events (
    dial_id TEXT NOT NULL REFERENCES dials (dial_id),
    status TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS dial_events_by_dial ON dial_events (dial_id, at)
"""


def _migrate_to_3(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE calls ADD COLUMN direction TEXT NOT NULL DEFAULT 'inbound'")
    conn.execute("ALTER TABLE calls ADD COLUMN dial_id TEXT NOT NULL DEFAULT ''")
    for statement in _SCHEMA_3_DIALS.split(";"):
        if statement.strip():
            conn.execute(statement)
    _fill_records(conn, {"direction": "inbound", "dial_id": ""})


def _fill_records(conn: sqlite3.Connection, defaults: dict[str, str]) -> None:
    """Give every stored record the fields a migration added, with their old meaning."""
    # The record column is what the webhook receives (and a redelivery sends again):
    # an old record says them too. In batches, so a large journal is not held in memory.
    last = 0
    while True:
        rows = conn.execute("SELECT id, record FROM calls WHERE id > ? ORDER BY id LIMIT 500", (last,)).fetchall()
        if not rows:
            return
        updates = []
        for row_id, text in rows:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise ValueError(f"call row {row_id}'s record is not a JSON object")
            for key, value in defaults.items():
                record.setdefault(key, value)
            updates.append((_dumps(record), row_id))
        conn.executemany("UPDATE calls SET record=? WHERE id=?", updates)
        last = rows[-1][0]


def _migrate_to_4(conn: sqlite3.Connection) -> None:
    # The record column keeps no answered_by for old calls: readers default it to "".
    conn.execute("ALTER TABLE calls ADD COLUMN answered_by TEXT NOT NULL DEFAULT ''")


def _migrate_to_5(conn: sqlite3.Connection) -> None:
    # Per-call profiles (issue 22): an older call ran without one. The record JSON of an old
    # call simply lacks the key, as a webhook consumer of the older records already saw.
    conn.execute("ALTER TABLE calls ADD COLUMN profile TEXT NOT NULL DEFAULT ''")


def _migrate_to_6(conn: sqlite3.Connection) -> None:
    # Recordings (issue 21): the path of the call's WAV file; older calls were not recorded.
    conn.execute("ALTER TABLE calls ADD COLUMN recording TEXT NOT NULL DEFAULT ''")


def _migrate_to_7(conn: sqlite3.Connection) -> None:
    """Outbound campaigns (voiced.outbound.campaign_store): the journal is their queue, so
    a row's state is committed before its call is placed and survives a kill."""
    conn.execute("CREATE TABLE IF NOT EXISTS campaigns (campaign_id TEXT PRIMARY KEY, created_at REAL NOT NULL, "
                 "settings TEXT NOT NULL, state TEXT NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS campaign_rows (campaign_id TEXT NOT NULL REFERENCES campaigns "
                 "(campaign_id), row_no INTEGER NOT NULL, number TEXT NOT NULL, variables TEXT NOT NULL, "
                 "tz TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
                 "next_at REAL NOT NULL DEFAULT 0, dial_id TEXT NOT NULL DEFAULT '', "
                 "outcome TEXT NOT NULL DEFAULT '', PRIMARY KEY (campaign_id, row_no))")
    conn.execute("CREATE INDEX IF NOT EXISTS campaigns_by_state ON campaigns (state)")
    conn.execute("CREATE INDEX IF NOT EXISTS campaign_rows_by_dial ON campaign_rows (dial_id) WHERE dial_id != ''")
    # After a kill, a row's dial is found by the key it was requested under.
    conn.execute("CREATE INDEX IF NOT EXISTS dials_by_campaign ON dials (campaign_id) WHERE campaign_id != ''")


#: From version N to N+1 (N is the key).
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_to_2, 2: _migrate_to_3, 3: _migrate_to_4, 4: _migrate_to_5, 5: _migrate_to_6, 6: _migrate_to_7}


class JournalError(Exception):
    """The journal cannot be used (a newer schema, not a database)."""


def open_for_writing(path: str, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating) the journal, in WAL mode with full durability, at the current schema:
    an older journal is migrated in place, a newer one refused."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread, timeout=10)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        _check_not_newer(path, version)
        if version < SCHEMA_VERSION:
            _upgrade(path, conn)
    except sqlite3.DatabaseError as e:
        conn.close()
        raise JournalError(f"{path}: {e}") from None
    except Exception:
        conn.close()
        raise
    return conn


def _check_not_newer(path: str, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise JournalError(f"{path} has journal schema version {version}, written by a newer voiced; this one "
                           f"knows versions up to {SCHEMA_VERSION}: upgrade voiced, or give it another journal file")


def _upgrade(path: str, conn: sqlite3.Connection) -> None:
    """Bring the journal to ``SCHEMA_VERSION`` in one transaction: a crash (or an error)
    half-way leaves it as it was, never half migrated."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated it meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        _check_not_newer(path, version)
        if version == 0:
            # Statement by statement: executescript would commit the transaction first.
            for statement in _SCHEMA_1.split(";"):
                if statement.strip():
                    conn.execute(statement)
            version = 1
        while version < SCHEMA_VERSION:
            try:
                _MIGRATIONS[version](conn)
            except ValueError as e:  # a record column that is not JSON: nothing is changed
                raise JournalError(f"{path}: cannot migrate schema {version} to {version + 1}: {e}") from None
            version += 1
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # (SQLite may have rolled it back itself: a full disk)
            conn.execute("ROLLBACK")
        raise


def open_read_only(path: str) -> sqlite3.Connection:
    """Open for reading only (``mode=ro``): safe beside the running daemon, never creates the
    file, never migrates it. A schema-1 journal (a daemon not yet upgraded still writes it)
    reads as if it were schema 2: every call in it was Twilio's, heard through its marks; one
    older than 3 as if every call were inbound (it has no dials); one older than 4 with an empty
    ``answered_by``; no call before schema 5 had a profile, none before 6 was recorded."""
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        _check_not_newer(path, version)
        if version < 1:
            raise JournalError(f"{path} has schema version {version}: an empty journal, or not voiced's")
        if version < 6:  # the last schema to add a column of calls (7 added tables only)
            # A temp view shadows the table of the same name for every unqualified query;
            # the temp schema is this connection's own, so the file is not written.
            older = ", 'twilio' AS carrier, 'carrier' AS playout" if version == 1 else ""
            older += ", 'inbound' AS direction, '' AS dial_id" if version < 3 else ""
            older += ", '' AS answered_by" if version < 4 else ""
            older += ", '' AS profile" if version < 5 else ""
            conn.execute(f"CREATE TEMP VIEW calls AS SELECT *{older}, '' AS recording FROM main.calls")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise JournalError(f"{path}: {e}") from None
    except JournalError:
        conn.close()
        raise
    return conn


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def write_call(conn: sqlite3.Connection, record: dict[str, Any]) -> int:
    """Commit one ended call (``CallRecord.as_json()``) and its turns in one transaction; its row id."""
    turns = record.get("turns") or []
    conn.execute("BEGIN IMMEDIATE")
    try:
        cursor = conn.execute(
            "INSERT INTO calls (call_sid, stream_sid, carrier, playout, from_number, to_number, parameters, "
            "started_at, ended_at, end_reason, turn_count, stt_retries, stt_failures, record, direction, dial_id, "
            "answered_by, profile, recording) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (record["call_sid"], record["stream_sid"], record["carrier"], record["playout"], record["from_number"],
             record["to_number"], _dumps(record["parameters"]), record["started_at"], record["ended_at"],
             record["end_reason"], len(turns), record["stt_retries"], _dumps(record["stt_failures"]),
             _dumps(record), record.get("direction", "inbound"), record.get("dial_id", ""),
             record.get("answered_by", ""), record.get("profile", ""), record.get("recording") or ""))
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


def recent_calls(conn: sqlite3.Connection, limit: int, carrier: str | None = None) -> list[sqlite3.Row]:
    if carrier is None:
        return conn.execute("SELECT * FROM calls ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return conn.execute("SELECT * FROM calls WHERE carrier=? ORDER BY id DESC LIMIT ?", (carrier, limit)).fetchall()


def calls_by_sid(conn: sqlite3.Connection, call_sid: str) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM calls WHERE call_sid=? ORDER BY id", (call_sid,)).fetchall()


def calls_since(conn: sqlite3.Connection, since: float, carrier: str | None = None) -> Iterator[sqlite3.Row]:
    if carrier is None:
        return conn.execute("SELECT * FROM calls WHERE ended_at >= ? ORDER BY id", (since,))
    return conn.execute("SELECT * FROM calls WHERE ended_at >= ? AND carrier=? ORDER BY id", (since, carrier))


def turns_of(conn: sqlite3.Connection, call_id: int) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM turns WHERE call_id=? ORDER BY seq", (call_id,)).fetchall()
