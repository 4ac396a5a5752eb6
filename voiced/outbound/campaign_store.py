"""Campaigns in the journal's SQLite database (tables ``campaigns`` and ``campaign_rows``,
created by the journal's schema migration in ``voiced.journal.store``).

The statements are plain functions on a connection; ``CampaignStore`` runs them through a
``Runner``: in the daemon the journal's one writer thread (``journal_runner``), so the
reactor never waits on the disk and every statement runs in the order it was asked for;
``DirectRunner`` runs them at once on a connection of the caller's (tests, tools).
Each mark is one autocommitted statement (the journal's ``synchronous=FULL``: durable when
its Deferred fires); what must change together is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

from voiced.outbound.campaign_settings import (
    ACTIVE, CANCELLED, DIALLING, DONE, LOADING, PENDING, RUNNING, ROW_STATES, CampaignError, CampaignRow,
    CampaignSettings)

T = TypeVar("T")


class Runner(Protocol):
    def __call__(self, statement: Callable[[sqlite3.Connection], T]) -> "Deferred[T]": ...


class DirectRunner:
    """Runs each statement at once, on the caller's thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __call__(self, statement: Callable[[sqlite3.Connection], T]) -> "Deferred[T]":
        try:
            return succeed(statement(self.conn))
        except Exception:
            return fail()


def journal_runner(journal: Any) -> Runner:
    """Statements on the ``JournalWriter``'s thread and connection, in order with its commits."""
    return journal.run  # type: ignore[no-any-return]


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _transaction(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _insert_rows(conn: sqlite3.Connection, campaign_id: str, rows: list[CampaignRow]) -> None:
    conn.executemany(
        "INSERT INTO campaign_rows (campaign_id, row_no, number, variables, tz, state, attempts, next_at, dial_id, "
        "outcome) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(campaign_id, r.row_no, r.number, _dumps(r.variables), r.tz, r.state, r.attempts, r.next_at, r.dial_id,
          r.outcome) for r in rows])


def create(conn: sqlite3.Connection, campaign_id: str, created_at: float, settings: CampaignSettings,
           rows: list[CampaignRow], more: bool) -> None:
    def work() -> None:
        conn.execute("INSERT INTO campaigns (campaign_id, created_at, settings, state) VALUES (?,?,?,?)",
                     (campaign_id, created_at, _dumps(settings.as_json()), LOADING if more else RUNNING))
        _insert_rows(conn, campaign_id, rows)

    _transaction(conn, work)


def append(conn: sqlite3.Connection, campaign_id: str, first_row: int, rows: list[CampaignRow], more: bool) -> None:
    """More rows of a ``loading`` campaign; ``first_row`` must follow its last row, so a batch
    sent twice (a client's retry) is refused rather than queued twice."""
    def work() -> None:
        found = conn.execute("SELECT state FROM campaigns WHERE campaign_id=?", (campaign_id,)).fetchone()
        if found is None:
            raise KeyError(campaign_id)
        if found[0] != LOADING:
            raise CampaignError(f"campaign {campaign_id} is {found[0]}: it takes no more rows")
        last = conn.execute("SELECT coalesce(max(row_no), 0) FROM campaign_rows WHERE campaign_id=?",
                            (campaign_id,)).fetchone()[0]
        if first_row != last + 1:
            raise CampaignError(f"first_row is {first_row}, the campaign's next row is {last + 1}")
        _insert_rows(conn, campaign_id, rows)
        if not more:
            conn.execute("UPDATE campaigns SET state=? WHERE campaign_id=?", (RUNNING, campaign_id))

    _transaction(conn, work)


def load(conn: sqlite3.Connection, campaign_id: str) -> tuple[CampaignSettings, str, list[CampaignRow]] | None:
    found = conn.execute("SELECT settings, state FROM campaigns WHERE campaign_id=?", (campaign_id,)).fetchone()
    if found is None:
        return None
    settings = CampaignSettings.from_json(json.loads(found[0]))
    rows = [CampaignRow(row_no, number, json.loads(variables), tz, state, attempts, next_at, dial_id, outcome)
            for row_no, number, variables, tz, state, attempts, next_at, dial_id, outcome in conn.execute(
                "SELECT row_no, number, variables, tz, state, attempts, next_at, dial_id, outcome FROM campaign_rows "
                "WHERE campaign_id=? ORDER BY row_no", (campaign_id,))]
    return settings, found[1], rows


def unfinished(conn: sqlite3.Connection) -> list[str]:
    """Campaigns to take up at start: still taking rows or running, or with a row not done
    (a cancelled campaign's calls that were in flight)."""
    return [r[0] for r in conn.execute(
        "SELECT campaign_id FROM campaigns WHERE state IN (?, ?) OR campaign_id IN "
        "(SELECT DISTINCT campaign_id FROM campaign_rows WHERE state != ?) ORDER BY created_at, campaign_id",
        (LOADING, RUNNING, DONE))]


def mark_dialling(conn: sqlite3.Connection, campaign_id: str, row_no: int, attempt: int) -> None:
    conn.execute("UPDATE campaign_rows SET state=?, attempts=?, dial_id='' WHERE campaign_id=? AND row_no=?",
                 (DIALLING, attempt, campaign_id, row_no))


def mark_active(conn: sqlite3.Connection, campaign_id: str, row_no: int, dial_id: str) -> None:
    conn.execute("UPDATE campaign_rows SET state=?, dial_id=? WHERE campaign_id=? AND row_no=?",
                 (ACTIVE, dial_id, campaign_id, row_no))


def mark_pending(conn: sqlite3.Connection, campaign_id: str, row_no: int, attempts: int, next_at: float,
                 outcome: str) -> None:
    conn.execute("UPDATE campaign_rows SET state=?, attempts=?, next_at=?, dial_id='', outcome=? "
                 "WHERE campaign_id=? AND row_no=?", (PENDING, attempts, next_at, outcome, campaign_id, row_no))


def mark_done(conn: sqlite3.Connection, campaign_id: str, row_no: int, outcome: str) -> None:
    conn.execute("UPDATE campaign_rows SET state=?, outcome=? WHERE campaign_id=? AND row_no=?",
                 (DONE, outcome, campaign_id, row_no))


def set_state(conn: sqlite3.Connection, campaign_id: str, state: str) -> None:
    conn.execute("UPDATE campaigns SET state=? WHERE campaign_id=?", (state, campaign_id))


def cancel_pending(conn: sqlite3.Connection, campaign_id: str) -> None:
    def work() -> None:
        conn.execute("UPDATE campaigns SET state=? WHERE campaign_id=?", (CANCELLED, campaign_id))
        conn.execute("UPDATE campaign_rows SET state=?, outcome=CASE WHEN outcome='' THEN 'skipped' ELSE outcome END "
                     "WHERE campaign_id=? AND state=?", (DONE, campaign_id, PENDING))

    _transaction(conn, work)


def progress(conn: sqlite3.Connection, campaign_id: str) -> dict[str, Any] | None:
    """What ``GET /campaigns/{id}`` shows: rows per state, final outcomes, retries made."""
    found = conn.execute("SELECT created_at, settings, state FROM campaigns WHERE campaign_id=?",
                         (campaign_id,)).fetchone()
    if found is None:
        return None
    states = {state: 0 for state in ROW_STATES}
    outcomes: dict[str, int] = {}
    total = retried = 0
    for state, outcome, rows, extra in conn.execute(
            "SELECT state, outcome, count(*), sum(max(attempts - 1, 0)) FROM campaign_rows WHERE campaign_id=? "
            "GROUP BY state, outcome", (campaign_id,)):
        states[state] = states.get(state, 0) + rows
        if state == DONE:
            outcomes[outcome] = outcomes.get(outcome, 0) + rows
        total += rows
        retried += extra or 0
    return {"campaign_id": campaign_id, "created_at": found[0], "settings": json.loads(found[1]),
            "state": found[2], "rows": total, "states": states, "outcomes": outcomes, "retried": retried,
            "in_flight": states[DIALLING] + states[ACTIVE]}


def campaign_of_dial(conn: sqlite3.Connection, dial_id: str) -> tuple[str, int] | None:
    found = conn.execute("SELECT campaign_id, row_no FROM campaign_rows WHERE dial_id=?", (dial_id,)).fetchone()
    return None if found is None else (found[0], found[1])


class CampaignStore:
    """The campaign statements as Deferreds, on a ``Runner``."""

    def __init__(self, run: Runner) -> None:
        self._run = run

    def create(self, campaign_id: str, created_at: float, settings: CampaignSettings, rows: list[CampaignRow],
               more: bool) -> Deferred[None]:
        return self._run(lambda c: create(c, campaign_id, created_at, settings, rows, more))

    def append(self, campaign_id: str, first_row: int, rows: list[CampaignRow], more: bool) -> Deferred[None]:
        return self._run(lambda c: append(c, campaign_id, first_row, rows, more))

    def load(self, campaign_id: str) -> Deferred[tuple[CampaignSettings, str, list[CampaignRow]] | None]:
        return self._run(lambda c: load(c, campaign_id))

    def unfinished(self) -> Deferred[list[str]]:
        return self._run(unfinished)

    def progress(self, campaign_id: str) -> Deferred[dict[str, Any] | None]:
        return self._run(lambda c: progress(c, campaign_id))

    def mark_dialling(self, campaign_id: str, row_no: int, attempt: int) -> Deferred[None]:
        return self._run(lambda c: mark_dialling(c, campaign_id, row_no, attempt))

    def mark_active(self, campaign_id: str, row_no: int, dial_id: str) -> Deferred[None]:
        return self._run(lambda c: mark_active(c, campaign_id, row_no, dial_id))

    def mark_pending(self, campaign_id: str, row_no: int, attempts: int, next_at: float,
                     outcome: str) -> Deferred[None]:
        return self._run(lambda c: mark_pending(c, campaign_id, row_no, attempts, next_at, outcome))

    def mark_done(self, campaign_id: str, row_no: int, outcome: str) -> Deferred[None]:
        return self._run(lambda c: mark_done(c, campaign_id, row_no, outcome))

    def set_state(self, campaign_id: str, state: str) -> Deferred[None]:
        return self._run(lambda c: set_state(c, campaign_id, state))

    def cancel_pending(self, campaign_id: str) -> Deferred[None]:
        return self._run(lambda c: cancel_pending(c, campaign_id))
