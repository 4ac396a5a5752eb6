"""The service's ``Dialer``: places calls through a carrier's ``CarrierDialer``, keeps each
dial's status history (in memory for the API, in the journal for good) and tells a new
media stream whether it is one of its dials.

A dial's life: ``dial`` writes it to the journal (``queued``, no call id yet), then asks
the carrier, so a kill at any moment leaves a trace of every call that may exist; once the
carrier accepted it, its call id is recorded. The carrier's status callbacks
(``status``) add to its history; its current status only moves forward (a late
``ringing`` after ``answered`` is history, not news), and a final status is final. When
the carrier opens the call's media stream, ``claim`` matches the stream to the dial once:
a second stream naming the same dial, or a stream naming a dial voiced never placed, is
an ordinary inbound call. What a restart left unknown is read back by
``voiced.outbound.readback`` (the campaigns' ``dial_status`` and ``find_dial``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Protocol

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.journal import dials as journal_dials
from voiced.outbound.dial import Dial, moves_to
from voiced.outbound.readback import DialReadBack, dial_from_journal
from voiced.outbound.request import FINAL_STATUSES, DialRequest, new_dial_id
from voiced.outbound.twilio_dial import surely_not_placed

log = Logger(namespace="voiced.outbound")

#: Dials kept in memory for ``GET /calls/{id}`` and stream matching; older ones are in the journal.
REMEMBERED_DIALS = 1000


class DialError(Exception):
    """A call voiced could not place; the message says why (never a credential).
    ``retryable``: the carrier surely created no call, so asking again cannot ring twice."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class _NotWritten(Exception):
    """The dial's row could not be written: the carrier was not asked."""


class CarrierDialer(Protocol):
    """One carrier's way of placing a call (Twilio's Calls resource, Telnyx's ``POST /v2/calls``...)."""

    carrier: str

    def place(self, dial_id: str, request: DialRequest, from_number: str) -> Deferred[str]:
        """Ask the carrier to place the call; fires with the carrier's call id."""

    def fetch_status(self, call_sid: str) -> Deferred[str | None]:
        """The call's status now (a DIAL_STATUS), None when the carrier has no such call."""

    def find_calls(self, to: str, from_number: str) -> Deferred[list[dict[str, Any]]]:
        """The carrier's latest calls between these numbers (``sid``, ``date_created``...)."""


class Dialer(DialReadBack):
    def __init__(self, carrier: CarrierDialer, clock: IReactorTime, default_from: str, journal: Any = None,
                 carrier_amd: bool = False) -> None:
        self.carrier = carrier
        self._clock = clock
        self._default_from = default_from
        # --amd carrier: every dial asks the carrier's answering-machine detection.
        self._carrier_amd = carrier_amd
        self._journal = journal  # voiced.journal.writer.JournalWriter, or None
        self._dials: dict[str, Dial] = {}
        self._placing: set[Deferred[str]] = set()
        self._listeners: list[Callable[[str, str], None]] = []
        self._answer_listeners: list[Callable[[str, str], None]] = []

    # ---- placing ---------------------------------------------------------------------------
    def dial(self, request: DialRequest, ready: Callable[[], Deferred[None]] | None = None) -> Deferred[str]:
        """Place ``request``; fires with the dial id once the carrier accepted the call, fails
        with ``DialError`` otherwise. ``ready`` (a campaign's pacing) is called once the dial is
        written, and the carrier is asked only when its Deferred fires."""
        from_number = request.from_number or self._default_from
        if not from_number:
            raise DialError("no caller id to dial from: give \"from\", or set --dial-from (VOICED_DIAL_FROM)")
        if self._carrier_amd and not request.machine_detection:
            request = replace(request, machine_detection=True)
        dial_id = new_dial_id()
        dial = Dial(dial_id, request, request.carrier or self.carrier.carrier, from_number, self._clock.seconds())
        dial.history.append(("queued", dial.created_at, ""))
        self._remember(dial)

        def ask_the_carrier(_: object) -> Deferred[str]:
            # Logged as the request goes: its time is what a carrier's calls-per-second counts.
            log.info("DIAL dial={dial} carrier={carrier} to={to} from={frm} variables={names}", dial=dial_id,
                     carrier=dial.carrier, to=request.to, frm=from_number,
                     names=",".join(sorted(request.variables)) or "-")
            return self.carrier.place(dial_id, request, from_number)

        placing = self._write_first(dial)
        if ready is not None:
            placing.addCallback(lambda _: ready())
        placing.addCallback(ask_the_carrier)
        self._placing.add(placing)
        placing.addBoth(self._placed, dial, placing)
        return placing

    def _write_first(self, dial: Dial) -> Deferred[None]:
        if self._journal is None or not self._journal.is_open:
            return succeed(None)
        row = {"dial_id": dial.dial_id, "carrier": dial.carrier, "to": dial.request.to, "from": dial.from_number,
               "variables": dial.request.variables, "call_sid": "", "campaign_id": dial.request.campaign_id,
               "status": "queued", "at": dial.created_at}

        def not_written(failure: Failure) -> None:
            raise _NotWritten(failure.getErrorMessage())

        return self._journal.run(lambda conn: journal_dials.insert_dial(conn, row)).addErrback(not_written)

    def _placed(self, result: str | Failure, dial: Dial, placing: Deferred[str]) -> str:
        self._placing.discard(placing)
        if isinstance(result, Failure):
            self._dials.pop(dial.dial_id, None)
            reason = "cancelled" if result.check(CancelledError) else result.getErrorMessage()
            log.warn("DIAL_FAILED dial={dial} to={to}: {reason}", dial=dial.dial_id, to=dial.request.to, reason=reason)
            if result.check(_NotWritten):
                raise DialError(f"the journal could not record the dial: {reason}", retryable=True)
            self._write(journal_dials.add_event, dial.dial_id, "failed", self._clock.seconds(), reason[:200], "failed")
            raise DialError(f"{dial.carrier} did not place the call: {reason}", retryable=surely_not_placed(result))
        dial.call_sid, dial.accepted = result, True
        log.info("DIAL_ACCEPTED dial={dial} call={call}", dial=dial.dial_id, call=result)
        self._write(journal_dials.set_call_sid, dial.dial_id, dial.call_sid)
        # Callbacks that came before the carrier's answer (it may call back at once).
        for status, at, detail in dial.history[1:]:
            self._write(journal_dials.add_event, dial.dial_id, status, at, detail, dial.status, dial.answered_by)
        self._tell(dial.dial_id, "queued")
        if dial.status != "queued":
            self._tell(dial.dial_id, dial.status)
        return dial.dial_id

    # ---- the carrier's callbacks ------------------------------------------------------------
    def known(self, dial_id: str) -> bool:
        return dial_id in self._dials

    def status(self, dial_id: str, status: str, detail: str = "", call_sid: str = "", answered_by: str = "") -> bool:
        """The carrier says ``dial_id``'s call is now ``status``; False for a dial this daemon
        does not know (placed by another process, or long ago)."""
        dial = self._dials.get(dial_id)
        if dial is None or (call_sid and dial.call_sid and call_sid != dial.call_sid):
            return False
        at = self._clock.seconds()
        dial.history.append((status, at, detail))
        if answered_by:
            dial.answered_by = answered_by
        moved = moves_to(dial.status, status)
        if moved:
            dial.status = status
        log.info("DIAL_STATUS dial={dial} call={call} status={status}{detail}", dial=dial_id, call=dial.call_sid or "-",
                 status=status, detail=f" {detail}" if detail else "")
        if dial.accepted:
            self._write(journal_dials.add_event, dial_id, status, at, detail, dial.status, dial.answered_by)
            if moved:
                self._tell(dial_id, status)
        return True

    def call_named(self, dial_id: str, call_id: str) -> None:
        """The carrier names the call it placed for the dial (Plivo accepts a dial with a
        request id and names the call only when it fetches the answer)."""
        dial = self._dials.get(dial_id)
        if dial is not None and dial.accepted and not dial.connected and call_id and dial.call_sid != call_id:
            dial.call_sid = call_id
            self._write(journal_dials.rename_call_sid, dial_id, call_id)

    def claim(self, dial_id: str, call_id: str, carrier: str = "twilio") -> Dial | None:
        """The dial a new media stream (carrier call ``call_id``) says it belongs to, once;
        None (logged) when it is not one this daemon placed and is waiting for."""
        dial = self._dials.get(dial_id)
        problem = ""
        if dial is None:
            problem = "not a dial this daemon placed"
        elif dial.connected:
            problem = "that dial's call is already connected"
        elif dial.call_sid and dial.call_sid != call_id:
            problem = f"that dial is call {dial.call_sid}"
        elif dial.carrier != carrier:
            problem = f"that dial went through {dial.carrier}, not {carrier}"
        elif dial.status in FINAL_STATUSES:
            problem = f"that dial is over ({dial.status})"
        if problem:
            log.warn("DIAL_IGNORED call={call} dial={dial}: {problem}; taken as an inbound call", call=call_id,
                     dial=dial_id[:40], problem=problem)
            return None
        assert dial is not None
        dial.connected = True
        dial.call_sid = dial.call_sid or call_id
        log.info("DIAL_CONNECTED dial={dial} call={call}: its variables reach the agent", dial=dial_id, call=call_id)
        return dial

    def answered_by(self, dial_id: str, answered_by: str) -> None:
        """Who answered the dial's call (its answering-machine verdict: human, machine,
        unknown): the dial, its journal row and the listeners learn it."""
        dial = self._dials.get(dial_id)
        if dial is not None:
            dial.answered_by = answered_by
        log.info("DIAL_ANSWERED_BY dial={dial} answered_by={who}", dial=dial_id, who=answered_by)
        self._write(journal_dials.set_answered_by, dial_id, answered_by, self._clock.seconds())
        for listener in list(self._answer_listeners):
            try:
                listener(dial_id, answered_by)
            except Exception:
                log.failure("Dial answered-by listener {listener!r} failed dial={dial}", listener=listener,
                            dial=dial_id)

    def call_event(self, record: Any, kind: str, data: dict[str, Any]) -> None:
        """A call's event (the service's CallHub): an outbound call's verdict on who answered."""
        if kind == "answered" and record.dial_id:
            self.answered_by(record.dial_id, data["answered_by"])

    # ---- reading --------------------------------------------------------------------------
    def snapshot(self, dial_id: str) -> dict[str, Any] | None:
        """The dial and its status history if it is still in memory (the console's call view)."""
        dial = self._dials.get(dial_id)
        return dial.as_json() if dial is not None and dial.accepted else None

    def describe(self, dial_id: str) -> Deferred[dict[str, Any] | None]:
        """The dial and its status history: from memory, else from the journal."""
        dial = self._dials.get(dial_id)
        if dial is not None:
            return succeed(dial.as_json() if dial.accepted else None)
        if self._journal is None or not self._journal.is_open:
            return succeed(None)
        return self._journal.run(lambda conn: dial_from_journal(conn, dial_id))

    def add_status_listener(self, listener: Callable[[str, str], None]) -> None:
        """``listener(dial_id, status)`` on every change of a dial's status (campaigns)."""
        self._listeners.append(listener)

    def add_answered_by_listener(self, listener: Callable[[str, str], None]) -> None:
        """``listener(dial_id, answered_by)`` once a dial's call knows who answered (campaigns)."""
        self._answer_listeners.append(listener)

    def stop(self) -> None:
        """The service stops: requests still waiting for the carrier are cancelled."""
        for placing in list(self._placing):
            placing.cancel()

    # ---- inside ---------------------------------------------------------------------------
    def _remember(self, dial: Dial) -> None:
        self._dials[dial.dial_id] = dial
        while len(self._dials) > REMEMBERED_DIALS:
            self._dials.pop(next(iter(self._dials)))

    def _tell(self, dial_id: str, status: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(dial_id, status)
            except Exception:
                log.failure("Dial status listener {listener!r} failed dial={dial}", listener=listener, dial=dial_id)

    def _write(self, statement: Callable[..., None], *args: Any) -> None:
        if self._journal is None or not self._journal.is_open:
            return
        self._journal.run(lambda conn: statement(conn, *args)).addErrback(
            lambda f: log.error("JOURNAL_WRITE_FAILED dial={dial}: {error}", dial=args[0] if isinstance(args[0], str)
                                else args[0].get("dial_id"), error=f.getErrorMessage()))


def build_dialer(settings: Any, http: Any, clock: IReactorTime, journal: Any) -> Dialer | None:
    """The service's dialer: every carrier whose REST credentials are set (and the public URL)."""
    from voiced.outbound.carriers import carrier_dialers

    carriers = carrier_dialers(settings, http, clock)
    if carriers is None:
        return None
    log.info("OUTBOUND carrier={carrier} carriers={names} from={frm} admin_token={token}", carrier=carriers.carrier,
             names=",".join(carriers.names), frm=settings.dial_from or "-",
             token="set" if settings.admin_token else "unset (POST /calls answers 503)")
    return Dialer(carriers, clock, settings.dial_from, journal, carrier_amd=settings.amd == "carrier")


def call_direction(dialer: Dialer | None, start: Any) -> dict[str, Any]:
    """``CallInfo``'s direction, variables and dial id for a new stream (``CallStart``): an
    outbound call's only when its ``voiced_dial`` parameter names a dial this daemon placed
    and is waiting for; otherwise nothing (an inbound call), logged when it named one."""
    from voiced.outbound.twilio_dial import DIAL_PARAMETER

    dial_id = start.custom_parameters.get(DIAL_PARAMETER, "")
    if not dial_id:
        return {}
    if dialer is None:
        log.warn("DIAL_IGNORED call={call} dial={dial}: this daemon places no calls; taken as an inbound call",
                 call=start.call_id, dial=dial_id[:40])
        return {}
    dial = dialer.claim(dial_id, start.call_id, start.carrier)
    if dial is None:
        return {}
    return {"direction": "outbound", "variables": dict(dial.request.variables), "dial_id": dial.dial_id}
