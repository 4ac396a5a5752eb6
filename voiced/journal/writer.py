"""The daemon's side of the journal: one SQLite connection on one writer thread, both
owned by the service (opened in ``startService``, closed in ``stopService``).

The reactor never waits on the disk: every statement runs on the writer thread and
comes back as a Deferred. One thread means the statements run in the order they
were asked for and the connection is never used by two threads at once. The writer
is the hub's observer: on a call's ``end`` event the record is complete, and it is
committed then, in one transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from voiced.call.record import CallRecord
from voiced.journal import store

log = Logger(namespace="voiced.journal")
T = TypeVar("T")


class JournalWriter:
    def __init__(self, path: str, reactor: Any) -> None:
        self.path = path
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="voiced-journal")
        self._conn: sqlite3.Connection | None = None
        self._pending: set[Deferred[Any]] = set()
        self.committed = 0
        #: Told (on the reactor thread) of each committed call: the outbox.
        self.on_commit: Callable[[int], None] | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def open(self) -> Deferred[None]:
        if not self._pool.started:
            self._pool.start()
        return self._run(self._open)

    def _open(self) -> None:
        # One worker thread serializes every use; check_same_thread is off only so that
        # the connection survives the pool replacing its thread.
        self._conn = store.open_for_writing(self.path, check_same_thread=False)

    def _run(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        d = deferToThreadPool(self._reactor, self._pool, fn, *args)
        self._pending.add(d)

        def done(result: Any) -> Any:
            self._pending.discard(d)
            return result

        return d.addBoth(done)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise store.JournalError("the journal is not open")
        return self._conn

    # ---- the hub's observer --------------------------------------------------------------
    def call_event(self, record: CallRecord, kind: str, data: dict[str, Any]) -> None:
        if kind == "end":
            self.commit(record)

    def commit(self, record: CallRecord) -> Deferred[int | None]:
        snapshot = record.as_json()  # a copy, taken on the reactor thread: the thread reads only this
        d = self._run(lambda: store.write_call(self._db(), snapshot))
        d.addCallbacks(self._committed, self._commit_failed, errbackArgs=(record.call_sid,))
        return d

    def _committed(self, row_id: int) -> int:
        self.committed += 1
        log.debug("JOURNAL call committed id={id}", id=row_id)
        if self.on_commit is not None:
            self.on_commit(row_id)
        return row_id

    def _commit_failed(self, failure: Any, call_sid: str) -> None:
        log.critical("JOURNAL_WRITE_FAILED call={call} journal={path}: {error}", call=call_sid, path=self.path,
                     error=failure.getErrorMessage())
        return None

    # ---- the outbox's statements -------------------------------------------------------
    def undelivered(self, after_id: int, limit: int) -> Deferred[list[tuple[int, str, str]]]:
        return self._run(lambda: store.undelivered(self._db(), limit, after_id))

    def mark_delivered(self, row_id: int, at: float) -> Deferred[None]:
        return self._run(lambda: store.mark_delivered(self._db(), row_id, at))

    def mark_failed(self, row_id: int, error: str) -> Deferred[None]:
        return self._run(lambda: store.mark_failed(self._db(), row_id, error))

    def count(self) -> Deferred[int]:
        return self._run(lambda: store.count(self._db()))

    # ---- anyone's statements (the dialer's) ------------------------------------------
    def run(self, statement: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """``statement(connection)`` on the writer thread, in order with every other one."""
        return self._run(lambda: statement(self._db()))

    # ---- stopping --------------------------------------------------------------------------
    def close(self) -> Deferred[None]:
        """Let the commits asked for so far finish, then close the connection and the thread."""
        pending = list(self._pending)
        flushed: Deferred[Any] = DeferredList(pending) if pending else succeed(None)

        def close_connection(_: object) -> Deferred[None]:
            return deferToThreadPool(self._reactor, self._pool, self._close)

        def stop_thread(_: object) -> None:
            self._pool.stop()

        return flushed.addCallback(close_connection).addBoth(stop_thread)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
