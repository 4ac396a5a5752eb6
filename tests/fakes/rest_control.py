"""The harness every carrier REST control's tests share: a real HTTP server on loopback
standing in for the carrier's API (``RecordingApp``: it records each request and answers
what the test queued), a treq client to reach it, and the control's log lines as text."""

from __future__ import annotations

from typing import ClassVar

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.fakes.http_apps import RecordingApp, make_http_client, start_server
from voiced.retry import Backoff

# Retries a test can wait for: 10, 20, 40 ms.
FAST = Backoff(0.01, 0.04, attempts=3, jitter=0)


def capture_log_lines(test: TestCase, namespace: str) -> list[str]:
    """The formatted lines logged under ``namespace`` (and below it) while ``test`` runs."""
    lines: list[str] = []

    def observe(event: dict) -> None:
        if event.get("log_namespace", "").startswith(namespace):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    test.addCleanup(globalLogPublisher.removeObserver, observe)
    return lines


class RestControlTestCase(TestCase):
    """``self.app``, ``self.server``, ``self.http`` and ``self.logs`` (the lines of the
    module named by ``log_namespace``) for one test."""

    log_namespace: ClassVar[str]

    def setUp(self) -> None:
        self.app = RecordingApp()
        self.server = start_server(self, self.app)
        self.http = make_http_client(self)
        self.logs = capture_log_lines(self, self.log_namespace)
