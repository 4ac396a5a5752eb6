"""Campaigns over a real journal: Harness (on a Clock, the in-test carrier and dialer) and AdminServer
(the campaigns resource on loopback, as the admin site mounts it)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from datetime import datetime
from zoneinfo import ZoneInfo

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.fakes.campaign_dialer import Carrier, InTestDialer, make_request
from tests.fakes.http_apps import _TrackingFactory

from voiced.journal import store as journal_store
from voiced.outbound.campaign_resource import CampaignsResource
from voiced.outbound.campaign_settings import CampaignSettings, check_row
from voiced.outbound.campaign_store import CampaignStore, DirectRunner
from voiced.outbound.campaigns import Campaigns
from voiced.web import BoundedRequest


TOKEN = "s3cret-admin"


class AdminServer:
    """The campaigns resource on loopback, as the admin site mounts it, its daemon side running
    on the real reactor; stopped (campaigns, connections, port) when the test ends."""

    def __init__(self, test: TestCase, plan=lambda request: [(0.0, "ringing"), (0.0, "completed")],
                 token: str = TOKEN) -> None:
        fd, path = tempfile.mkstemp(suffix=".sqlite3")
        os.close(fd)
        os.unlink(path)
        test.addCleanup(lambda: [os.unlink(p) for p in (path, path + "-wal", path + "-shm") if os.path.exists(p)])
        self.conn: sqlite3.Connection = journal_store.open_for_writing(path)
        test.addCleanup(self.conn.close)
        self.carrier = Carrier()
        self.dialer = InTestDialer(self.carrier, reactor, plan)
        self.campaigns = Campaigns(CampaignStore(DirectRunner(self.conn)), self.dialer, reactor,
                                   make_request=make_request)
        self.campaigns.start()
        root = Resource()
        root.putChild(b"campaigns", CampaignsResource(self.campaigns, token))
        site = Site(root, requestFactory=BoundedRequest)
        site.noisy = False
        self.factory = _TrackingFactory(site)
        self.factory.noisy = False
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self._stopped: Deferred | None = None
        test.addCleanup(self.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"

    def stop(self) -> Deferred:
        if self._stopped is None:
            self.campaigns.stop()
            self._stopped = self.port.stopListening()
            self._stopped.addCallback(lambda _: self.factory.close_all())
        done: Deferred = Deferred()
        self._stopped.addBoth(lambda result: (done.callback(None), result)[1])
        return done


def at(text: str, tz: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def rows(count: int, tz: str = "") -> list:
    return [check_row(n, {"number": f"+1555010{n:04d}", "variables": {"name": f"N{n}"}, "tz": tz})
            for n in range(1, count + 1)]


class Harness:
    """A journal file, a Clock, the in-test carrier and dialer, and the service's Campaigns."""

    def __init__(self, test: SynchronousTestCase, plan=lambda request: [], start: float = 1_000_000.0,
                 path: str | None = None, carrier: Carrier | None = None, unreachable: int = 0) -> None:
        if path is None:
            fd, path = tempfile.mkstemp(suffix=".sqlite3")
            os.close(fd)
            os.unlink(path)
            test.addCleanup(lambda: [os.unlink(p) for p in (path, path + "-wal", path + "-shm")
                                     if os.path.exists(p)])
        self.path = path
        self.conn = journal_store.open_for_writing(path)
        test.addCleanup(self.conn.close)
        self.clock = Clock()
        self.clock.advance(start)
        self.carrier = carrier or Carrier()
        self.dialer = InTestDialer(self.carrier, self.clock, plan)
        self.dialer.unreachable = unreachable
        self.store = CampaignStore(DirectRunner(self.conn))
        self.campaigns = Campaigns(self.store, self.dialer, self.clock, make_request=make_request)
        self.campaigns.start()

    def create(self, settings: CampaignSettings, campaign_rows: list, more: bool = False) -> str:
        d = self.campaigns.create(settings, campaign_rows, more)
        return self._result(d)

    def progress(self, campaign_id: str) -> dict:
        return self._result(self.store.progress(campaign_id))

    @staticmethod
    def _result(d):
        found = []
        d.addBoth(found.append)
        assert found, "DirectRunner answers at once"
        if hasattr(found[0], "raiseException"):
            found[0].raiseException()
        return found[0]

    def run(self, seconds: float, step: float = 0.125) -> None:
        for _ in range(int(seconds / step)):
            self.clock.advance(step)

    def starts(self) -> list[float]:
        return [t for t, _ in self.dialer.requests]
