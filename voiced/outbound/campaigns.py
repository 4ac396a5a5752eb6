"""The service's campaigns: created by ``POST /campaigns``, run in the daemon, taken up again
at start from the journal (every campaign not finished: nothing forgotten).

Owned by the service from ``start`` (after the warm-up, the journal open and the dialer
ready) to ``stop`` (before the journal closes). ``stop`` writes nothing: a stop and a kill
leave the journal alike, and the next ``start`` resumes from it.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from voiced.outbound.campaign import Campaign
from voiced.outbound.campaign_protocol import Dialer, default_request
from voiced.outbound.campaign_settings import DONE, FINISHED, CampaignRow, CampaignSettings
from voiced.outbound.campaign_store import CampaignStore

log = Logger(namespace="voiced.campaign")


def new_campaign_id() -> str:
    return "c-" + secrets.token_hex(8)


class UnknownCampaign(KeyError):
    pass


class Campaigns:
    def __init__(self, store: CampaignStore, dialer: Dialer, clock: Any,
                 make_request: Callable[..., Any] = default_request,
                 new_id: Callable[[], str] = new_campaign_id) -> None:
        self.store = store
        self._dialer = dialer
        self._clock = clock
        self._make_request = make_request
        self._new_id = new_id
        self.running: dict[str, Campaign] = {}
        self._started = False
        self._stopped = False
        self._listening = False

    def start(self) -> Deferred[None]:
        """Take up every unfinished campaign; new ones run as they are created."""
        self._started = True
        if not self._listening:
            self._dialer.add_status_listener(self.on_status)
            self._listening = True
        d = self.store.unfinished()
        d.addCallback(self._resume_each)
        return d

    def _resume_each(self, campaign_ids: list[str]) -> Deferred[None] | None:
        pending = [cid for cid in campaign_ids if cid not in self.running]
        if not pending or self._stopped:
            return None
        cid = pending[0]
        d = self.store.load(cid)

        def loaded(found: Any) -> Deferred[None] | None:
            if found is not None and cid not in self.running and not self._stopped:
                settings, state, rows = found
                unfinished = sum(1 for row in rows if row.state != DONE)
                log.info("CAMPAIGN_RESUMED campaign={c} state={state} rows={rows} unfinished={unfinished}", c=cid,
                         state=state, rows=len(rows), unfinished=unfinished)
                self._run(cid, settings, state, rows)
            return self._resume_each(pending[1:])

        return d.addCallback(loaded)

    def stop(self) -> None:
        self._stopped = True
        for campaign in self.running.values():
            campaign.stop()
        self.running.clear()

    def _run(self, campaign_id: str, settings: CampaignSettings, state: str, rows: list[CampaignRow]) -> Campaign:
        campaign = Campaign(campaign_id, settings, rows, state, self.store, self._dialer, self._clock,
                            self._make_request)
        self.running[campaign_id] = campaign

        def finished(state: str) -> None:
            log.info("CAMPAIGN_FINISHED campaign={c} state={state} dials={dials}", c=campaign_id, state=state,
                     dials=campaign.dials_started)
            if self.running.get(campaign_id) is campaign:
                del self.running[campaign_id]

        campaign.finished.addCallback(finished)
        campaign.start()
        return campaign

    # ---- the admin resource's requests ----------------------------------------------------------
    def create(self, settings: CampaignSettings, rows: list[CampaignRow], more: bool) -> Deferred[str]:
        campaign_id = self._new_id()
        state = "loading" if more else "running"
        d = self.store.create(campaign_id, self._clock.seconds(), settings, rows, more)

        def created(_: object) -> str:
            log.info("CAMPAIGN_CREATED campaign={c} rows={rows} concurrency={n} cps={cps:g} window={window}",
                     c=campaign_id, rows=len(rows), n=settings.concurrency, cps=settings.cps,
                     window=settings.window or "any")
            if self._started and not self._stopped and campaign_id not in self.running:
                self._run(campaign_id, settings, state, rows)
            return campaign_id

        return d.addCallback(created)

    def append(self, campaign_id: str, first_row: int, rows: list[CampaignRow], more: bool) -> Deferred[None]:
        d = self.store.append(campaign_id, first_row, rows, more)

        def appended(_: object) -> None:
            campaign = self.running.get(campaign_id)
            if campaign is not None:
                campaign.add_rows(rows, more)

        def unknown(failure: Any) -> None:
            failure.trap(KeyError)
            raise UnknownCampaign(campaign_id)

        return d.addCallbacks(appended, unknown)

    def progress(self, campaign_id: str) -> Deferred[dict[str, Any] | None]:
        return self.store.progress(campaign_id)

    def cancel(self, campaign_id: str) -> Deferred[dict[str, Any] | None]:
        campaign = self.running.get(campaign_id)
        if campaign is not None:
            d = campaign.cancel()
        else:
            d = self.store.progress(campaign_id).addCallback(self._cancel_stored, campaign_id)
        return d.addCallback(lambda _: self.store.progress(campaign_id))

    def _cancel_stored(self, found: dict[str, Any] | None, campaign_id: str) -> Deferred[None] | None:
        # Not running here: not started yet (the warm-up), or already over.
        if found is None or found["state"] in (FINISHED, "cancelled"):
            return succeed(None)
        return self.store.cancel_pending(campaign_id)

    # ---- the dialer's news ------------------------------------------------------------------------
    def on_status(self, dial_id: str, status: str) -> None:
        if self._stopped:
            return
        for campaign in list(self.running.values()):
            if campaign.on_status(dial_id, status):
                return

    def on_answered_by(self, dial_id: str, answered_by: str) -> None:
        """The answering-machine verdict of a dial (amd21): a machine's ``completed`` is ``voicemail``."""
        for campaign in list(self.running.values()):
            if campaign.on_answered_by(dial_id, answered_by):
                return
