"""What the service's calls leave behind: the journal (and the outbox that delivers its
records) and the recordings. A part of ``voiced.service.VoicedService`` (a mixin, like
``HealthReports`` and ``WarmUp``): ``startService`` starts them, ``stopService`` closes
them once the calls it closed are written.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from voiced.call.record import CallHub
from voiced.config import Settings
from voiced.lifecycle import note_construction

log = Logger(namespace="voiced.service")


class CallRecords:
    settings: Settings
    clock: Any
    http: Any
    call_hub: CallHub
    journal: Any  # voiced.journal.writer.JournalWriter, with VOICED_JOURNAL
    outbox: Any  # voiced.journal.outbox.Outbox, with VOICED_CALL_WEBHOOK_URL
    recordings: Any  # voiced.recording.recordings.Recordings, with VOICED_RECORDINGS

    def _start_journal(self) -> None:
        """The journal's writer thread and connection (opened by the warm-up, before ready)
        and the outbox that delivers its records."""
        s = self.settings
        if not s.journal:
            return
        from voiced.journal.writer import JournalWriter

        self.journal = JournalWriter(s.journal, self.clock)
        self.call_hub.subscribe(self.journal)
        if s.call_webhook_url:
            from voiced.journal.outbox import Outbox

            if not s.webhook_secret:
                log.warn("Call records are POSTed unsigned (no VOICED_WEBHOOK_SECRET)")
            self.outbox = Outbox(self.journal, self.http, self.clock, s.call_webhook_url, s.webhook_secret)
            self.journal.on_commit = self.outbox.kick

    def _start_recordings(self) -> None:
        """The recordings' writer thread and their daily retention sweep."""
        if not self.settings.recordings:
            return
        from voiced.recording.recordings import Recordings

        self.recordings = Recordings(self.settings.recordings, self.settings.recording_retention_days, self.clock)
        self.recordings.start()
        note_construction("recording_writer")

    def open_recording(self, call: Any) -> Any:
        """The call's recording (``voiced.recording.tap.CallRecording``), or None when calls are not recorded;
        its ``CallLink`` asks as the call starts."""
        return self.recordings.open(call) if self.recordings is not None else None

    def _close_journal(self, _: object) -> Deferred[None] | None:
        if self.journal is None:
            return None
        self.call_hub.unsubscribe(self.journal)
        return self.journal.close().addErrback(lambda f: log.failure("Closing the journal", f))

    def _close_recordings(self, _: object) -> Deferred[None] | None:
        """Every recording written and closed (a call still open is closed where it got to)."""
        if self.recordings is None:
            return None
        return self.recordings.stop().addErrback(lambda f: log.failure("Closing the recordings", f))
