"""The text-to-speech contract: text in, 8 kHz mu-law out (no header), as a Deferred.

An engine that can play a sentence before it is synthesized whole also offers ``stream``
(``StreamingTTSEngine``); every other engine is taken as one chunk (``voiced.tts.speaker``)."""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

from twisted.internet.defer import Deferred


class TTSEngine(Protocol):
    name: str

    def synthesize(self, text: str) -> Deferred[bytes]:
        """Synthesize ``text`` off the reactor thread; fires on the reactor thread with
        raw 8 kHz mu-law audio, or fails."""


@runtime_checkable
class StreamingTTSEngine(Protocol):
    name: str

    def synthesize(self, text: str) -> Deferred[bytes]: ...

    def stream(self, text: str, on_audio: Callable[[bytes], None], call_id: str = "-") -> Deferred[None]:
        """Synthesize ``text``, calling ``on_audio`` on the reactor thread with each chunk of
        8 kHz mu-law as it arrives; fires once the last chunk was given, or fails. Cancelling
        it (a barge-in) closes the request: no chunk comes after the cancel."""


class TTSRefused(Exception):
    """The provider refused the request (401/403/4xx): retrying the same request cannot help."""
