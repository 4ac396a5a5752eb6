"""What a call's Google recognition results have settled, and what they still owe (``Ledger``).

``voiced.google.stt_stream`` runs a call's streams; the books are the ``StreamLedger``'s
(``voiced.stt.ledger``: the call's audio by absolute byte offsets, one byte per sample of
8 kHz mu-law, two of 16 kHz PCM; what is settled, the utterance under way, the final owed;
what a new stream replays and the fallback gets). This adds what each response means for
them -- a final settles its audio, a partial opens an utterance -- and the per-stream
partial and "heard since speech" marks. It never opens, retires or retries a stream, and
never calls the listener: that is the stream's job.
"""

from __future__ import annotations

from google.cloud import speech_v1

from voiced.audio import MULAW_8K, AudioFormat
from voiced.google.stt_session import Session
from voiced.stt.ledger import StreamLedger

#: The protobuf messages under proto-plus's wrappers, which the streams read (cheaper to read).
RawResponse = speech_v1.StreamingRecognizeResponse.pb()
RawResult = speech_v1.StreamingRecognitionResult.pb()


class Ledger(StreamLedger):
    """One call's books; used on the reactor thread only, by its GoogleSTTStream."""

    def __init__(self, audio: AudioFormat = MULAW_8K) -> None:
        super().__init__(audio)
        self.partial_open = False  # a partial came after the last final: an utterance is under way
        self.heard_since_speech = False  # any response since the caller last began speaking

    def speech_started(self, ms_ago: int = 0) -> None:
        if self.speech_at is None:
            self.heard_since_speech = False
        super().speech_started(ms_ago)

    def owe_final(self, speech_at: int | None) -> bool:
        """The caller spoke and stopped: a final is owed, unless one came since the last
        partial. Whether one is owed now (this turn's, or an earlier one still)."""
        if self.partial_open or not self.heard_since_speech:
            self._owe_from(speech_at)
        return self.owed_from is not None

    @property
    def mid_utterance(self) -> bool:
        """A partial is open, or the VAD hears speech a finals-only server has not answered yet."""
        return self.partial_open or self.speech_at is not None

    # -- the service's side (responses) ---------------------------------------------------------

    def answered(self, session: Session, response: RawResponse) -> bool:
        """A response of the current stream came; whether it holds a final. Finals without
        words settle their audio here; those with words, one by one, in ``finalized``."""
        self.heard_since_speech = True
        has_final = any(r.is_final for r in response.results)
        if has_final:
            self.owed_from = None
            self.words_open = False
        for empty_final in (r for r in response.results if r.is_final and not r.alternatives):
            # Nothing recognized, but that audio is done with.
            self._settle(session, empty_final)
            self.partial_open = False
        return has_final

    def finalized(self, session: Session, result: RawResult) -> str:
        """A final with words: its audio is settled. Its text."""
        self._settle(session, result)
        self.partial_open = False
        return result.alternatives[0].transcript.strip()

    def partial(self, results: list[RawResult]) -> str:
        """A response of partials only: its text ("" if no words), which opens an utterance."""
        # Later results are the less stable continuation of the first.
        partial = "".join(r.alternatives[0].transcript for r in results).strip()
        if partial:
            self.partial_open = self.words_open = True
        return partial

    def _settle(self, session: Session, result: RawResult) -> None:
        end = result.result_end_time  # a protobuf Duration since the stream began
        self._settle_final(session.base, end.seconds + end.nanos / 1e9, session.sent_upto)

    def replay_start(self) -> int:
        """A new stream opens: where its replay starts. Its partials are yet to come."""
        self.partial_open = False
        return super().replay_start()
