"""The text-to-speech contract: text in, 8 kHz mu-law out (no header), as a Deferred."""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred


class TTSEngine(Protocol):
    name: str

    def synthesize(self, text: str) -> Deferred[bytes]:
        """Synthesize ``text`` off the reactor thread; fires on the reactor thread with
        raw 8 kHz mu-law audio, or fails."""
