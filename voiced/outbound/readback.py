"""What a restart left unknown: a campaign's dials read back from the journal and the carrier.

A campaign that resumes asks of each row it had dialled what became of it (``dial_status``)
and, for a row whose dial may or may not have reached the carrier (a kill between the
journal's row and the carrier's answer), whether the carrier has its call (``find_dial``).
A dial found this way is taken up again (``_adopt``): its later callbacks count. A part of
``voiced.outbound.dialer.Dialer`` (a mixin): it shares the dialer's dials and journal.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from voiced.journal import dials as journal_dials
from voiced.outbound.campaign_protocol import dial_key
from voiced.outbound.dial import Dial
from voiced.outbound.request import FINAL_STATUSES, DialRequest
from voiced.outbound.twilio_dial import created_at

log = Logger(namespace="voiced.outbound")

#: How far the carrier's clock may be behind ours when a dial's call is looked for by its time.
CARRIER_CLOCK_SKEW_S = 5
_DIAL_COLUMNS = ("dial_id", "carrier", "to_number", "from_number", "variables", "call_sid", "campaign_id", "status",
                 "answered_by", "created_at", "updated_at")


class DialReadBack:
    carrier: Any  # voiced.outbound.dialer.CarrierDialer
    _clock: IReactorTime
    _journal: Any
    _dials: dict[str, Dial]
    status: Callable[..., bool]
    _remember: Callable[[Dial], None]
    _write: Callable[..., None]

    def dial_status(self, dial_id: str) -> Deferred[str | None]:
        """The dial's status now: the journal's when final, else the carrier's (a lost callback,
        or a restart: the dial is taken up again so its later callbacks count); None for a dial
        never recorded. Fails when the carrier cannot be asked."""
        dial = self._dials.get(dial_id)
        if dial is not None:
            return self._carrier_status(dial)
        if self._journal is None or not self._journal.is_open:
            return succeed(None)
        return self._journal.run(lambda conn: journal_dials.dial(conn, dial_id)).addCallback(self._status_of_row)

    def _status_of_row(self, row: Any) -> Deferred[str | None]:
        if row is None:
            return succeed(None)
        return self._carrier_status(self._adopt(row))

    def _carrier_status(self, dial: Dial) -> Deferred[str | None]:
        if dial.status in FINAL_STATUSES or not dial.call_sid:
            return succeed(dial.status)

        def known(status: str | None) -> str:
            if status is None:  # the carrier never had it: it cannot ring any more
                status = "failed"
            if status != dial.status:
                self.status(dial.dial_id, status, "read back from the carrier", dial.call_sid)
            return dial.status

        return self.carrier.fetch_status(dial.call_sid).addCallback(known)

    def find_dial(self, campaign_id: str, row_no: int, attempt: int) -> Deferred[str | None]:
        """The dial a campaign requested for row ``row_no``'s ``attempt`` (its DialRequest's
        campaign_id is ``campaign_id/row/attempt``), or None when the carrier has no such call.
        A dial with no call id yet (killed before the carrier's answer) is looked for among the
        carrier's calls to that number, created since the dial was written. Fails when the
        carrier cannot be asked: only a sure None lets the row be dialled again."""
        if self._journal is None or not self._journal.is_open:
            return succeed(None)
        key = dial_key(campaign_id, row_no, attempt)
        return self._journal.run(lambda conn: journal_dials.latest_for_campaign_key(conn, key)).addCallback(
            self._found_row)

    def _found_row(self, row: Any) -> Deferred[str | None]:
        if row is None:
            return succeed(None)  # never written, so never requested
        dial = self._adopt(row)
        if dial.call_sid:
            return succeed(dial.dial_id)

        def match(calls: list[dict[str, Any]]) -> Deferred[str | None]:
            since = int(dial.created_at) - CARRIER_CLOCK_SKEW_S
            fresh = [c for c in calls if isinstance(c.get("sid"), str) and (created_at(c) or 0) >= since]
            sids = [c["sid"] for c in fresh]
            known = self._journal.run(lambda conn: journal_dials.known_sids(conn, sids))
            return known.addCallback(lambda taken: self._take_call([c for c in fresh if c["sid"] not in taken],
                                                                   dial))

        return self.carrier.find_calls(dial.request.to, dial.from_number).addCallback(match)

    def _take_call(self, calls: list[dict[str, Any]], dial: Dial) -> str | None:
        if not calls:
            self._dials.pop(dial.dial_id, None)
            self._write(journal_dials.add_event, dial.dial_id, "failed", self._clock.seconds(),
                        "the carrier has no such call", "failed")
            return None
        call = calls[-1]  # the oldest since the dial was written: the carrier lists newest first
        dial.call_sid = call["sid"]
        self._write(journal_dials.set_call_sid, dial.dial_id, dial.call_sid)
        log.info("DIAL_FOUND dial={dial} call={call}: the carrier had it", dial=dial.dial_id, call=dial.call_sid)
        return dial.dial_id

    def _adopt(self, row: Any) -> Dial:
        """A dial the journal holds, remembered again (this process did not place it)."""
        values = dict(zip(_DIAL_COLUMNS, row))
        known = self._dials.get(values["dial_id"])
        if known is not None:
            return known
        request = DialRequest(values["to_number"], json.loads(values["variables"]),
                              campaign_id=values["campaign_id"])
        dial = Dial(values["dial_id"], request, values["carrier"], values["from_number"], values["created_at"],
                    call_sid=values["call_sid"], status=values["status"], accepted=True,
                    answered_by=values["answered_by"])
        self._remember(dial)
        return dial


def dial_from_journal(conn: Any, dial_id: str) -> dict[str, Any] | None:
    """A dial no longer in memory, as ``Dial.as_json`` shows one (``Dialer.describe``)."""
    row = journal_dials.dial(conn, dial_id)
    if row is None:
        return None
    names = [d[0] for d in conn.execute("SELECT * FROM dials LIMIT 0").description]
    values = dict(zip(names, row))
    return {"id": values["dial_id"], "direction": "outbound", "carrier": values["carrier"], "to": values["to_number"],
            "from": values["from_number"], "call_sid": values["call_sid"], "status": values["status"],
            "variables": json.loads(values["variables"]), "campaign_id": values["campaign_id"],
            "answered_by": values["answered_by"],
            "history": [{"status": s, "at": at, "detail": d} for s, at, d in journal_dials.events(conn, dial_id)]}
