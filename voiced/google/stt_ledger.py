"""What a call's recognition results have settled, and what they still owe (``Ledger``).

``voiced.google.stt_stream`` runs a call's streams; this module keeps their books: the
call's recent audio (``AudioLog``, by absolute byte offsets since the call began, in the
stream's format: one byte per sample of 8 kHz mu-law, two of 16 kHz PCM), the
offset before which no audio needs a replay (finalized, handed to the fallback, or
silence), the utterance under way and the final owed for a turn the call has ended,
and what each response means for them -- a final settles its audio, a partial opens an
utterance. From them it works out what a new stream replays, what the fallback gets,
and which audio can go. It never opens, retires or retries a stream, and never calls
the listener: that is the stream's job.
"""

from __future__ import annotations

from datetime import timedelta

from google.cloud import speech_v1

from voiced.audio import MULAW_8K, AudioFormat
from voiced.google.stt_session import AudioLog, Session
from voiced.stt.local import PREROLL_MS

#: The most audio kept for a replay: longer than any utterance, short enough to resend in a blink.
REPLAY_MAX_MS = 30_000
#: More than Google takes to answer speech with a partial: older audio without one was silence.
UNANSWERED_MS = 5_000


class Ledger:
    """One call's books; used on the reactor thread only, by its GoogleSTTStream."""

    def __init__(self, audio: AudioFormat = MULAW_8K) -> None:
        self.format = audio
        per_ms = audio.bytes_per_ms()
        self.replay_max_bytes = per_ms * REPLAY_MAX_MS
        self.unanswered_bytes = per_ms * UNANSWERED_MS
        self._preroll_bytes = per_ms * PREROLL_MS
        self.audio = AudioLog()
        # Audio before this offset needs no replay: finalized, handed to the fallback, or silence.
        self.settled_at = 0
        self.speech_at: int | None = None  # where the current utterance began (VAD hint)
        self.partial_open = False  # a partial came after the last final: an utterance is under way
        self.words_unfinalized = False  # like partial_open, but across streams (a retry resets that)
        self.heard_since_speech = False  # any response since the caller last began speaking
        # Where the utterance began that the call ended (flush) and whose final has not come yet.
        self.owed_from: int | None = None

    # -- the caller's side (VAD hints) --------------------------------------------------------

    def speech_started(self) -> None:
        if self.speech_at is None:
            self.speech_at = self.audio.end
            self.heard_since_speech = False

    def utterance_over(self) -> int | None:
        """The caller stopped speaking: where that utterance began (None without a VAD hint)."""
        speech_at, self.speech_at = self.speech_at, None
        return speech_at

    def owe_final(self, speech_at: int | None) -> bool:
        """The caller spoke and stopped: a final is owed, unless one came since the last
        partial. Whether one is owed now (this turn's, or an earlier one still)."""
        if self.partial_open or not self.heard_since_speech:
            began = speech_at if speech_at is not None else self.settled_at
            self.owed_from = began if self.owed_from is None else min(self.owed_from, began)
        return self.owed_from is not None

    @property
    def mid_utterance(self) -> bool:
        """A partial is open, or the VAD hears speech a finals-only server has not answered yet."""
        return self.partial_open or self.speech_at is not None

    # -- the service's side (responses) ---------------------------------------------------------

    def answered(self, session: Session, response: speech_v1.StreamingRecognizeResponse) -> bool:
        """A response of the current stream came; whether it holds a final. Finals without
        words settle their audio here; those with words, one by one, in ``finalized``."""
        self.heard_since_speech = True
        has_final = any(r.is_final for r in response.results)
        if has_final:
            self.owed_from = None
            self.words_unfinalized = False
        for empty_final in (r for r in response.results if r.is_final and not r.alternatives):
            # Nothing recognized, but that audio is done with.
            self.settled_at = max(self.settled_at, self._final_offset(session, empty_final))
            self.partial_open = False
        return has_final

    def finalized(self, session: Session, result: speech_v1.StreamingRecognitionResult) -> str:
        """A final with words: its audio is settled. Its text."""
        self.settled_at = max(self.settled_at, self._final_offset(session, result))
        self.partial_open = False
        return result.alternatives[0].transcript.strip()

    def partial(self, results: list[speech_v1.StreamingRecognitionResult]) -> str:
        """A response of partials only: its text ("" if no words), which opens an utterance."""
        # Later results are the less stable continuation of the first.
        partial = "".join(r.alternatives[0].transcript for r in results).strip()
        if partial:
            self.partial_open = self.words_unfinalized = True
        return partial

    def _final_offset(self, session: Session, result: speech_v1.StreamingRecognitionResult) -> int:
        """Where a final's audio ends, as an absolute offset."""
        end = self._bytes_at(result.result_end_time)
        # A server that leaves result_end_time unset: what was sent counts as finalized,
        # so a replay can never repeat this final.
        return session.base + end if end > 0 else session.sent_upto

    def _bytes_at(self, duration: timedelta) -> int:
        """A result time (a timedelta since the stream began) as a byte offset into its audio:
        whole samples, so a replay never starts half-way through a 16-bit one."""
        fmt = self.format
        return round(duration.total_seconds() * fmt.sample_rate) * fmt.bytes_per_sample

    # -- what to replay, hand over, forget ------------------------------------------------------

    def replay_start(self) -> int:
        """A new stream opens: where its replay starts. Its partials are yet to come."""
        self.settle_unanswerable()
        self.partial_open = False
        return max(self.settled_at, self.audio.start)

    def hand_over(self) -> bytes:
        """Retries exhausted: the audio that may still hold words, for the fallback, which
        answers for any final owed. Settled from now on: never replayed."""
        self.settle_unanswerable()
        self.owed_from = None
        self.words_unfinalized = False
        audio = self.audio.since(self.settled_at)
        self.settled_at = self.audio.end
        return audio

    def fallback_start(self) -> tuple[bytes, bool]:
        """Degraded to whole utterances: the audio the fallback starts with, and whether it
        is an utterance (else only pre-roll for the next one)."""
        if self.speech_at is not None:
            # Mid-utterance: the utterance so far, from just before it began; the call's
            # flush at its end transcribes it.
            return self.audio.since(max(self.settled_at, self.speech_at - self._preroll_bytes)), True
        if self.owed_from is not None:
            # The call already ended this turn and waits for its final: every unsettled
            # byte, as on giving up (the stream flushes it).
            self.settle_unanswerable()
            return self.audio.since(self.settled_at), True
        return self.audio.since(self.settled_at), False

    def utterances_at(self) -> int | None:
        """Where the earliest utterance that may still need words began (pre-roll included)."""
        starts = [at - self._preroll_bytes for at in (self.speech_at, self.owed_from) if at is not None]
        return min(starts) if starts else None

    def settle_unanswerable(self) -> None:
        """Before a replay (a new stream, or the fallback): only the latest audio, or an
        utterance under way or owed a final, may hold words not answered yet; older
        audio was silence to the VAD. So no stream starts with a burst of up to 30 s,
        far faster than real time, and the fallback gets the utterance, not the call."""
        utterances_at = self.utterances_at()
        if utterances_at is None and self.words_unfinalized:
            return  # words under way, and no VAD hint where they began: keep them all
        unanswered = self.audio.end - self.unanswered_bytes
        if utterances_at is not None:
            unanswered = min(unanswered, utterances_at)
        self.settled_at = max(self.settled_at, unanswered)

    def forget_old_audio(self) -> None:
        needed = self.settled_at
        utterances_at = self.utterances_at()
        if utterances_at is not None:
            needed = min(needed, utterances_at)  # for a degraded mode's utterance
        self.audio.forget_before(max(needed, self.audio.end - self.replay_max_bytes))
