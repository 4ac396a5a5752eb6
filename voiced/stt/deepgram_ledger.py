"""What a call's Deepgram results have settled, and what they still owe (``Ledger``).

The books are the ``StreamLedger``'s (``voiced.stt.ledger``); this adds what Deepgram's
messages mean for them. A final settles its audio: Deepgram's ``start`` and ``duration``
are seconds of the stream's own audio, so a stream that began at offset ``base`` has
settled up to ``base + (start + duration)``. An interim with words opens an utterance.
The stream (``voiced.stt.deepgram_stream``) acts; this keeps the books and never calls
anyone.
"""

from __future__ import annotations

from voiced.stt.ledger import StreamLedger


class Ledger(StreamLedger):
    """One call's books; used on the reactor thread only, by its DeepgramSTTStream."""

    def owe_final(self, speech_at: int | None) -> bool:
        """The turn ended: a final is owed for words not finalized yet, or for speech the VAD
        heard that nothing answered. Whether one is owed now (this turn's, or an earlier one)."""
        if self.words_open or speech_at is not None:
            self._owe_from(speech_at)
        return self.owed_from is not None

    def interim(self, transcript: str) -> str:
        text = transcript.strip()
        if text:
            self.words_open = True
        return text

    def final(self, base: int, end_s: float, sent_upto: int) -> None:
        """A final of the stream that began at ``base``: its audio, up to ``end_s`` seconds into
        the stream, is settled (all that was sent, if the server gives no times)."""
        self._settle_final(base, end_s, sent_upto)
        self.words_open = False
        self.owed_from = None
