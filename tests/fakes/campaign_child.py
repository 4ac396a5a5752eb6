"""A process that runs campaigns as the daemon does (the journal's writer thread, the real
reactor) against a carrier that is a file, so that a test can SIGKILL it half-way and start
it again over the same journal: ``python -m tests.fakes.campaign_child JOURNAL CARRIER [--create N]``.

The carrier file is what the carrier knows, written (and fsynced) before a dial's id is
answered: one JSON line per created call and per status. A call still live in it when its
process died was cut with its media stream: asked again, the carrier says ``completed``.
Rows whose number ends in 7 are busy on their first attempt.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, succeed

from tests.fakes.campaign_dialer import make_request
from voiced.journal.writer import JournalWriter
from voiced.outbound.campaign_protocol import FINAL_STATUSES, dial_key
from voiced.outbound.campaign_settings import CampaignSettings, check_row
from voiced.outbound.campaign_store import CampaignStore, journal_runner
from voiced.outbound.campaigns import Campaigns

SETTINGS = CampaignSettings(concurrency=4, cps=20, retries=1, retry_delay_s=0.3, retry_on=("busy",))
CALL_S = 0.15  # a call's length
REST_S = 0.01  # the carrier's REST answer comes this long after the call exists


def planned_end(to: str, attempt: int) -> str:
    return "busy" if to.endswith("7") and attempt == 1 else "completed"


class FileCarrierDialer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.listeners: list[Callable[[str, str], None]] = []
        self.mine: set[str] = set()

    def _events(self) -> list[dict[str, Any]]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.endswith("\n")]

    def _write(self, event: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def dial(self, request: Any, ready: Any = None) -> Deferred[str]:
        if ready is not None:  # the campaign's send slot, as the Dialer waits for it
            return ready().addCallback(lambda _: self._dial(request))
        return self._dial(request)

    def _dial(self, request: Any) -> Deferred[str]:
        sent_at = reactor.seconds()  # first: the campaign's limiter counted this moment
        events = self._events()
        dial_id = f"d-{os.getpid():08x}{len(events):08x}"
        attempt = int(request.campaign_id.rsplit("/", 1)[1])
        self._write({"event": "dial", "dial_id": dial_id, "key": request.campaign_id, "to": request.to,
                     "pid": os.getpid(), "t": sent_at})
        self.mine.add(dial_id)
        print(f"dialled {request.to}", flush=True)
        reactor.callLater(CALL_S, self._status, dial_id, planned_end(request.to, attempt))
        answered: Deferred[str] = Deferred()
        reactor.callLater(REST_S, answered.callback, dial_id)
        return answered

    def _status(self, dial_id: str, status: str) -> None:
        self._write({"event": "status", "dial_id": dial_id, "status": status, "t": reactor.seconds()})
        for listener in self.listeners:
            listener(dial_id, status)

    def add_status_listener(self, listener: Callable[[str, str], None]) -> None:
        self.listeners.append(listener)

    def find_dial(self, campaign_id: str, row_no: int, attempt: int) -> Deferred[str | None]:
        key = dial_key(campaign_id, row_no, attempt)
        found = [e["dial_id"] for e in self._events() if e["event"] == "dial" and e["key"] == key]
        return succeed(found[0] if found else None)

    def dial_status(self, dial_id: str) -> Deferred[str | None]:
        events = [e for e in self._events() if e["dial_id"] == dial_id]
        if not events:
            return succeed(None)
        statuses = [e["status"] for e in events if e["event"] == "status"]
        if statuses and statuses[-1] in FINAL_STATUSES:
            return succeed(statuses[-1])
        if dial_id in self.mine:
            return succeed("queued")
        # Its process died mid-call: the carrier ended it (a busy line is busy whoever listens).
        dial = events[0]
        return succeed(planned_end(dial["to"], int(dial["key"].rsplit("/", 1)[1])))


async def run(journal_path: str, carrier_path: str, create: int) -> None:
    writer = JournalWriter(journal_path, reactor)
    await writer.open()
    campaigns = Campaigns(CampaignStore(journal_runner(writer)), FileCarrierDialer(carrier_path), reactor,
                          make_request=make_request)
    await campaigns.start()
    if create:
        rows = [check_row(n, {"number": f"+1555020{n:04d}", "variables": {"n": str(n)}}) for n in range(1, create + 1)]
        campaign_id = await campaigns.create(SETTINGS, rows, more=False)
        print(f"campaign {campaign_id}", flush=True)
    print(f"running {len(campaigns.running)}", flush=True)
    await gatherResults([c.finished for c in campaigns.running.values()])
    campaigns.stop()
    await writer.close()
    print("finished", flush=True)


def main() -> None:
    journal_path, carrier_path = sys.argv[1], sys.argv[2]
    create = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--create" else 0
    exit_code = [1]

    def done(_: object) -> None:
        exit_code[0] = 0
        reactor.stop()

    def failed(failure: Any) -> None:
        print(failure.getTraceback(), file=sys.stderr, flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run(journal_path, carrier_path, create))
                            .addCallbacks(done, failed))
    reactor.run()
    sys.exit(exit_code[0])


if __name__ == "__main__":
    main()
