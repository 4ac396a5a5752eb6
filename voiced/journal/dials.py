"""The journal's statements on dials (schema 3, ``voiced.journal.store``): the calls voiced
placed and each one's status history. Blocking, like ``store``: the daemon runs them on
the journal's writer thread, ``voiced-records`` directly."""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def _has_dials(conn: sqlite3.Connection) -> bool:
    """A journal older than schema 3 (read-only, not migrated) has no dials table."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='dials'").fetchone() is not None


def insert_dial(conn: sqlite3.Connection, dial: dict[str, Any]) -> None:
    """A dial the carrier accepted, with its first status, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT INTO dials (dial_id, carrier, to_number, from_number, variables, call_sid, campaign_id, status, "
            "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (dial["dial_id"], dial["carrier"], dial["to"], dial["from"],
             json.dumps(dial["variables"], sort_keys=True, ensure_ascii=False), dial["call_sid"],
             dial["campaign_id"], dial["status"], dial["at"], dial["at"]))
        conn.execute("INSERT INTO dial_events (dial_id, status, at, detail) VALUES (?,?,?,?)",
                     (dial["dial_id"], dial["status"], dial["at"], ""))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def add_event(conn: sqlite3.Connection, dial_id: str, status: str, at: float, detail: str,
              current: str, answered_by: str = "") -> None:
    """One status the carrier reported; ``current`` is the dial's status after it (a late
    callback does not move a finished dial back)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO dial_events (dial_id, status, at, detail) VALUES (?,?,?,?)",
                     (dial_id, status, at, detail))
        conn.execute("UPDATE dials SET status=?, updated_at=?, answered_by=CASE WHEN ?='' THEN answered_by ELSE ? "
                     "END WHERE dial_id=?", (current, at, answered_by, answered_by, dial_id))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def set_answered_by(conn: sqlite3.Connection, dial_id: str, answered_by: str, at: float) -> None:
    """Who answered the dial's call, once its answering-machine detection knows."""
    conn.execute("UPDATE dials SET answered_by=?, updated_at=? WHERE dial_id=?", (answered_by, at, dial_id))


def dial(conn: sqlite3.Connection, dial_id: str) -> sqlite3.Row | tuple | None:
    if not _has_dials(conn):
        return None
    return conn.execute("SELECT * FROM dials WHERE dial_id=?", (dial_id,)).fetchone()


def dial_by_sid(conn: sqlite3.Connection, call_sid: str) -> sqlite3.Row | tuple | None:
    if not call_sid or not _has_dials(conn):
        return None
    return conn.execute("SELECT * FROM dials WHERE call_sid=? ORDER BY created_at DESC LIMIT 1", (call_sid,)).fetchone()


def events(conn: sqlite3.Connection, dial_id: str) -> list[Any]:
    if not _has_dials(conn):
        return []
    return conn.execute("SELECT status, at, detail FROM dial_events WHERE dial_id=? ORDER BY at, rowid",
                        (dial_id,)).fetchall()


def recent_dials(conn: sqlite3.Connection, limit: int) -> list[Any]:
    if not _has_dials(conn):
        return []
    return conn.execute("SELECT * FROM dials ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()


def set_call_sid(conn: sqlite3.Connection, dial_id: str, call_sid: str) -> None:
    """The carrier's call id, once known (the dial row is written before the carrier is asked)."""
    conn.execute("UPDATE dials SET call_sid=? WHERE dial_id=? AND call_sid=''", (call_sid, dial_id))


def rename_call_sid(conn: sqlite3.Connection, dial_id: str, call_sid: str) -> None:
    """The carrier named the call it placed for the dial (Plivo accepts a dial with a request id)."""
    conn.execute("UPDATE dials SET call_sid=? WHERE dial_id=?", (call_sid, dial_id))


def latest_for_campaign_key(conn: sqlite3.Connection, key: str) -> sqlite3.Row | tuple | None:
    """The newest dial a campaign requested under ``key`` (``campaign_id/row/attempt``)."""
    if not key or not _has_dials(conn):
        return None
    return conn.execute("SELECT * FROM dials WHERE campaign_id=? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                        (key,)).fetchone()


def known_sids(conn: sqlite3.Connection, sids: list[str]) -> set[str]:
    """Which of ``sids`` some dial already holds."""
    if not sids or not _has_dials(conn):
        return set()
    marks = ",".join("?" * len(sids))
    return {row[0] for row in conn.execute(f"SELECT call_sid FROM dials WHERE call_sid IN ({marks})", sids)}


