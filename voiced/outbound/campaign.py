"""One campaign's scheduler: which row to dial, and when.

Limits, for any sequence of outcomes: at most ``concurrency`` calls in flight (requested and
not yet ended: a row ``dialling`` or ``active``), at most ``cps`` new calls per second (a
sliding window: never more than ``ceil(cps)`` starts in any ``ceil(cps)/cps`` seconds, which
is what a carrier's calls-per-second limit counts), a call started only inside the calling
window in the callee's zone (a waiting row sleeps until the computed opening, no polling).

The journal is the queue (``CampaignStore``): a row is committed ``dialling`` with its attempt
number *before* its call is requested, and ``active`` with the dial id once the carrier took
it. After a kill, ``start`` resumes every row that is not done: a row left ``dialling`` is
first looked up at the dialer (``find_dial``) and dialled again only if no such call exists,
a row left ``active`` has its status asked; so nothing is dialled twice and nothing forgotten.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.outbound.campaign_protocol import FINAL_STATUSES, Dialer, RowStore, default_request, dial_key, outcome_of
from voiced.outbound.campaign_settings import (
    ACTIVE, CANCELLED, DIALLING, DONE, FINISHED, LOADING, PENDING, RUNNING, CampaignRow, CampaignSettings, zone)

log = Logger(namespace="voiced.campaign")

# An unreachable dialer (find_dial, dial_status) is asked again after this; the row waits.
LOOKUP_RETRY_S = 30.0
# A call whose end was never reported (a status callback lost) would hold its slot for ever:
# the calls in flight have their status asked this often.
STATUS_CHECK_S = 300.0
# Statuses that arrive before the dial's id is known (a fast "busy" racing the REST answer).
MAX_EARLY_STATUSES = 1000
_EPSILON = 1e-6


class StartLimiter:
    """At most ``count`` starts in any ``period`` seconds, ``count / period == cps``."""

    def __init__(self, cps: float) -> None:
        self.count = max(1, int(cps))
        self.period = self.count / cps
        self._starts: deque[float] = deque(maxlen=self.count)

    def next_allowed(self, now: float) -> float:
        if len(self._starts) < self.count:
            return now
        allowed = self._starts[0] + self.period
        return now if allowed <= now + _EPSILON else allowed

    def record(self, at: float) -> None:
        self._starts.append(at)


class Campaign:
    def __init__(self, campaign_id: str, settings: CampaignSettings, rows: list[CampaignRow], state: str,
                 store: RowStore, dialer: Dialer, clock: Any,
                 make_request: Callable[[str, dict[str, str], CampaignSettings, str], Any] = default_request
                 ) -> None:
        self.campaign_id = campaign_id
        self.settings = settings
        self.state = state
        self.rows = {row.row_no: row for row in rows}
        self._store = store
        self._dialer = dialer
        self._clock = clock
        self._make_request = make_request
        self._limiter = StartLimiter(settings.cps)
        self._queue: list[tuple[float, int]] = []  # (not before, row_no) of pending rows
        self._by_dial: dict[str, CampaignRow] = {}
        self._early: OrderedDict[str, str] = OrderedDict()
        self._awaiting_id = 0  # dial requests sent, not yet answered
        self._wake: Any = None
        self._send_limiter = StartLimiter(settings.cps)
        self._outbox: deque[tuple[CampaignRow, Deferred[None]]] = deque()  # dials written, waiting to be sent
        self._unsent: set[int] = set()  # rows whose send slot a cancel took away
        self._send_timer: Any = None
        self._timers: set[Any] = set()  # requests and lookups to come, cancelled by stop
        self._stopped = False
        self._status_checks = LoopingCall(self._check_active)
        self._status_checks.clock = clock
        self.done = sum(1 for row in rows if row.state == DONE)
        self.in_flight = 0
        self.dials_started = 0
        #: Fires when every row is done (cancelled: when the calls in flight ended).
        self.finished: Deferred[str] = Deferred()

    # ---- life ------------------------------------------------------------------------------
    def start(self) -> None:
        """Take up the rows as the journal has them: queue the pending, resolve the in-flight."""
        for row in sorted(self.rows.values(), key=lambda r: r.row_no):
            if row.state == PENDING:
                heapq.heappush(self._queue, (row.next_at, row.row_no))
            elif row.state == DIALLING:
                self.in_flight += 1
                if row.dial_id:
                    self._track(row)
                else:
                    self._resolve(row)
            elif row.state == ACTIVE:
                self.in_flight += 1
                self._track(row)
        self._status_checks.start(STATUS_CHECK_S, now=False)
        self._pump()

    def stop(self) -> None:
        """The service is stopping: dial nothing more and write nothing more; the journal keeps
        each row where it is, for the next start."""
        self._stopped = True
        if self._status_checks.running:
            self._status_checks.stop()
        for call in [self._wake, self._send_timer, *self._timers]:
            if call is not None and call.active():
                call.cancel()
        while self._outbox:  # the dials waiting to be sent never are: the next start finds no call
            self._outbox.popleft()[1].cancel()
        self._wake = None
        self._timers.clear()

    def add_rows(self, rows: list[CampaignRow], more: bool) -> None:
        for row in rows:
            self.rows[row.row_no] = row
            heapq.heappush(self._queue, (row.next_at, row.row_no))
        if not more and self.state == LOADING:
            self.state = RUNNING
        self._pump()

    def cancel(self) -> Deferred[None]:
        """No new call; those in flight go on to their end (and are not retried)."""
        if self.state in (CANCELLED, FINISHED):
            return succeed(None)
        self.state = CANCELLED
        for row in self.rows.values():
            if row.state == PENDING:
                self._set_done(row, row.outcome or "skipped")
        self._queue.clear()
        d = self._store.cancel_pending(self.campaign_id)
        if self._send_timer is not None and self._send_timer.active():
            self._send_timer.cancel()
        self._send_timer = None
        while self._outbox:  # committed dialling, not sent yet: never will be (see _refused)
            row, slot = self._outbox.popleft()
            self._unsent.add(row.row_no)
            slot.errback(CancelledError("the campaign was cancelled before this call was requested"))
        self._check_finished()
        return d

    # ---- the scheduler ------------------------------------------------------------------------
    def _pump(self) -> None:
        if self._stopped or self.state in (CANCELLED, FINISHED):
            return
        if self._wake is not None and self._wake.active():
            self._wake.cancel()
        self._wake = None
        now = self._clock.seconds()
        window = self.settings.calling_window
        wake_at: float | None = None
        while self._queue and self.in_flight < self.settings.concurrency:
            not_before, row_no = self._queue[0]
            row = self.rows[row_no]
            if row.state != PENDING or not_before < row.next_at - _EPSILON:
                heapq.heappop(self._queue)  # stale: the row moved on since
                continue
            if not_before > now + _EPSILON:
                wake_at = not_before
                break
            if window is not None:
                opening = window.next_opening(now, zone(row.tz or self.settings.tz))
                if opening > now:
                    heapq.heapreplace(self._queue, (opening, row_no))
                    continue
            allowed = self._limiter.next_allowed(now)
            if allowed > now:
                wake_at = allowed
                break
            heapq.heappop(self._queue)
            self._dial(row, now)
        if wake_at is not None:
            self._wake = self._clock.callLater(max(0.0, wake_at - now), self._pump)
        self._check_finished()

    def _dial(self, row: CampaignRow, now: float) -> None:
        attempt = row.attempts + 1
        row.state, row.attempts, row.dial_id, row.answered, row.answered_by = DIALLING, attempt, "", False, ""
        self.in_flight += 1
        self.dials_started += 1
        self._limiter.record(now)
        try:
            request = self._make_request(row.number, row.variables, self.settings,
                                         dial_key(self.campaign_id, row.row_no, attempt))
        except Exception as e:  # the dialer's own check of the request: no call can be made
            log.warn("CAMPAIGN_ROW_REFUSED campaign={c} row={row}: {error}", c=self.campaign_id, row=row.row_no,
                     error=e)
            self._end_attempt(row, "failed", retryable=False)
            return
        self._awaiting_id += 1
        marked = self._store.mark_dialling(self.campaign_id, row.row_no, attempt)
        marked.addCallbacks(self._send, self._mark_failed, (row, request), None, (row,))

    def _send(self, _: object, row: CampaignRow, request: Any) -> None:
        if self._stopped:
            self._awaiting_id -= 1
            return  # committed dialling, never sent: the next start finds no call and dials it
        d = maybeDeferred(self._dialer.dial, request, lambda: self._send_slot(row))
        d.addCallbacks(self._accepted, self._refused, (row,), None, (row,))
        d.addErrback(lambda f: log.failure("Campaign dial bookkeeping", f))

    def _send_slot(self, row: CampaignRow) -> Deferred[None]:
        # The dialer calls this once its dial is written, just before it asks the carrier: the
        # commits before (ours, the dialer's) take a varying time and a timer fires late, so the
        # requests are spaced again by the moment each really goes: the carrier never sees more than cps.
        slot: Deferred[None] = Deferred()
        self._outbox.append((row, slot))
        if self._send_timer is None:
            self._send_due()
        return slot

    def _send_due(self) -> None:
        self._send_timer = None
        while self._outbox:
            now = self._clock.seconds()
            allowed = self._send_limiter.next_allowed(now)
            if allowed > now:
                self._send_timer = self._clock.callLater(allowed - now, self._send_due)
                return
            _, slot = self._outbox.popleft()
            self._send_limiter.record(now)
            slot.callback(None)

    def _mark_failed(self, failure: Failure, row: CampaignRow) -> None:
        # Not committed, so not dialled: the row waits and is tried again, its attempt not counted.
        self._awaiting_id -= 1
        log.critical("CAMPAIGN_JOURNAL_FAILED campaign={c} row={row}: {error}", c=self.campaign_id,
                     row=row.row_no, error=failure.getErrorMessage())
        self.in_flight -= 1
        row.attempts -= 1
        self._requeue(row, self._clock.seconds() + LOOKUP_RETRY_S, row.outcome)

    def _accepted(self, dial_id: str, row: CampaignRow) -> None:
        self._awaiting_id -= 1
        if self._stopped:
            return
        self._activate(row, dial_id)
        early = self._early.pop(dial_id, None)
        if self._awaiting_id == 0:
            self._early.clear()
        if early is not None:
            self.on_status(dial_id, early)

    def _activate(self, row: CampaignRow, dial_id: str) -> None:
        row.state, row.dial_id = ACTIVE, dial_id
        self._by_dial[dial_id] = row
        self._store.mark_active(self.campaign_id, row.row_no, dial_id).addErrback(self._write_failed)

    def _refused(self, failure: Failure, row: CampaignRow) -> None:
        self._awaiting_id -= 1
        if self._stopped:
            return
        if row.row_no in self._unsent:  # cancelled while it waited for its send slot: not an attempt
            self._unsent.discard(row.row_no)
            self.in_flight -= 1
            row.attempts -= 1
            self._set_done(row, row.outcome or "skipped")
            self._store.mark_pending(self.campaign_id, row.row_no, row.attempts, row.next_at, row.outcome)
            self._store.mark_done(self.campaign_id, row.row_no, row.outcome).addErrback(self._write_failed)
            self._check_finished()
            return
        retryable = bool(getattr(failure.value, "retryable", False))
        log.warn("CAMPAIGN_DIAL_FAILED campaign={c} row={row} attempt={attempt} retryable={retryable}: {error}",
                 c=self.campaign_id, row=row.row_no, attempt=row.attempts, retryable=retryable,
                 error=failure.getErrorMessage())
        self._end_attempt(row, "failed", retryable)

    # ---- what the dialer tells ------------------------------------------------------------------
    def on_status(self, dial_id: str, status: str) -> bool:
        """A dial's status changed (the dialer's listener); True if it is one of this campaign's."""
        row = self._by_dial.get(dial_id)
        if row is None:
            if self._awaiting_id and status in FINAL_STATUSES:
                self._early[dial_id] = status
                while len(self._early) > MAX_EARLY_STATUSES:
                    self._early.popitem(last=False)
            return False
        if self._stopped:
            return True
        if status == "answered":
            row.answered = True
        elif status in FINAL_STATUSES:
            del self._by_dial[dial_id]
            self._end_attempt(row, outcome_of(status, row.answered_by),
                              retryable=status in self.settings.retry_on)
        return True

    def on_answered_by(self, dial_id: str, answered_by: str) -> bool:
        """The carrier's or voiced's answering-machine verdict (human, machine_end_beep, ...)."""
        row = self._by_dial.get(dial_id)
        if row is not None:
            row.answered_by = answered_by
        return row is not None

    def _end_attempt(self, row: CampaignRow, outcome: str, retryable: bool) -> None:
        self.in_flight -= 1
        if retryable and row.attempts < self.settings.max_attempts and self.state not in (CANCELLED, FINISHED):
            self._requeue(row, self._clock.seconds() + self.settings.retry_delay(row.attempts), outcome)
        else:
            self._set_done(row, outcome)
            self._store.mark_done(self.campaign_id, row.row_no, outcome).addErrback(self._write_failed)
        self._pump()
        self._check_finished()

    def _requeue(self, row: CampaignRow, at: float, outcome: str) -> None:
        row.state, row.next_at, row.outcome, row.dial_id = PENDING, at, outcome, ""
        self._store.mark_pending(self.campaign_id, row.row_no, row.attempts, at, outcome).addErrback(
            self._write_failed)
        if self.state not in (CANCELLED, FINISHED):
            heapq.heappush(self._queue, (at, row.row_no))
        self._pump()

    # ---- after a restart: the rows a kill left in flight -----------------------------------------
    def _resolve(self, row: CampaignRow) -> None:
        d = maybeDeferred(self._dialer.find_dial, self.campaign_id, row.row_no, row.attempts)
        d.addCallbacks(self._resolved, self._lookup_failed, (row,), None, (row, self._resolve))

    def _resolved(self, dial_id: str | None, row: CampaignRow) -> None:
        if self._stopped:
            return
        if dial_id:
            self._activate(row, dial_id)
            self._track(row)
            return
        # The carrier has no such call: the attempt never happened, and the row waits again.
        log.info("CAMPAIGN_ROW_RESUMED campaign={c} row={row}: attempt {attempt} was never placed",
                 c=self.campaign_id, row=row.row_no, attempt=row.attempts)
        self.in_flight -= 1
        row.attempts -= 1
        self._requeue(row, self._clock.seconds(), row.outcome)

    def _track(self, row: CampaignRow) -> None:
        self._by_dial[row.dial_id] = row
        d = maybeDeferred(self._dialer.dial_status, row.dial_id)
        d.addCallbacks(self._tracked, self._lookup_failed, (row,), None, (row, self._track))

    def _tracked(self, status: str | None, row: CampaignRow) -> None:
        if self._stopped or self._by_dial.get(row.dial_id) is not row:
            return  # the listener told its end meanwhile
        if status is None:
            # A dial the dialer does not know cannot be watched; not dialled again (it may exist).
            self._by_dial.pop(row.dial_id, None)
            self._end_attempt(row, "failed", retryable=False)
        elif status in FINAL_STATUSES or status == "answered":
            self.on_status(row.dial_id, status)

    def _check_active(self) -> None:
        for row in list(self._by_dial.values()):
            self._track(row)

    def _lookup_failed(self, failure: Failure, row: CampaignRow, again: Callable[[CampaignRow], None]) -> None:
        if self._stopped:
            return
        log.warn("CAMPAIGN_LOOKUP_FAILED campaign={c} row={row}, asking again in {s:g} s: {error}",
                 c=self.campaign_id, row=row.row_no, s=LOOKUP_RETRY_S, error=failure.getErrorMessage())
        def ask_again() -> None:
            self._timers.discard(call)
            again(row)

        call = self._clock.callLater(LOOKUP_RETRY_S, ask_again)
        self._timers.add(call)

    # ---- the end -------------------------------------------------------------------------------
    def _set_done(self, row: CampaignRow, outcome: str) -> None:
        row.state, row.outcome = DONE, outcome
        self.done += 1

    def _check_finished(self) -> None:
        if self.finished.called or self.in_flight or self.state == LOADING:
            return
        if self.state != CANCELLED and self.done < len(self.rows):
            return
        if self.state != CANCELLED:
            self.state = FINISHED
            self._store.set_state(self.campaign_id, FINISHED).addErrback(self._write_failed)
        if self._wake is not None and self._wake.active():
            self._wake.cancel()
        if self._status_checks.running:
            self._status_checks.stop()
        self.finished.callback(self.state)

    def _write_failed(self, failure: Failure) -> None:
        log.critical("CAMPAIGN_JOURNAL_FAILED campaign={c}: {error}", c=self.campaign_id,
                     error=failure.getErrorMessage())
