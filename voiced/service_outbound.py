"""The service's outbound side: the dialer that places calls (with a carrier's REST
credentials) and the campaigns that dial through it. A part of
``voiced.service.VoicedService`` (a mixin, like ``HealthReports`` and ``WarmUp``):
``startService`` builds them after the journal, the warm-up starts the campaigns once it
is open, and ``stopService`` stops them before the calls close.
"""

from __future__ import annotations

from typing import Any

from voiced.call.record import CallHub
from voiced.config import Settings
from voiced.outbound.dialer import build_dialer


class OutboundSide:
    settings: Settings
    clock: Any
    http: Any
    call_hub: CallHub
    journal: Any
    dialer: Any  # voiced.outbound.dialer.Dialer, with Twilio's REST credentials
    campaigns: Any  # voiced.outbound.campaigns.Campaigns: journal, dialer, one worker

    def _start_outbound(self) -> None:
        self.dialer = build_dialer(self.settings, self.http, self.clock, self.journal)
        if self.dialer is not None:  # amde2e: a call's answering-machine verdict reaches its dial's row
            self.call_hub.subscribe(self.dialer)
        self._build_campaigns()

    def _build_campaigns(self) -> None:
        """Campaigns keep their queue in the journal; under --workers each worker would run
        every campaign, so they run only in a single process. Started after the warm-up."""
        if self.journal is None or self.dialer is None or self.settings.workers != 1:
            return
        from voiced.outbound.campaign_store import CampaignStore, journal_runner
        from voiced.outbound.campaigns import Campaigns

        self.campaigns = Campaigns(CampaignStore(journal_runner(self.journal)), self.dialer, self.clock)
        self.dialer.add_answered_by_listener(self.campaigns.on_answered_by)  # a voicemail is the row's outcome

    def _stop_outbound(self) -> None:
        if self.campaigns is not None:
            self.campaigns.stop()  # writes nothing: the next start resumes from the journal
        if self.dialer is not None:
            self.dialer.stop()
