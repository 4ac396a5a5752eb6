"""What a call's streaming recognition has settled, and what it still owes (``StreamLedger``).

The books both streaming engines keep (``voiced.google.stt_ledger``,
``voiced.stt.deepgram_ledger`` add how their own results move them): the call's recent
audio (``AudioLog``, by absolute byte offsets since the call began, in the stream's
format), the offset before which no audio needs a replay (finalized, handed to the
fallback, or silence), the utterance under way and the final owed for a turn the call has
ended. From them it works out what a new stream replays after a failure (so no caller word
is lost), what the fallback transcriber gets when the retries run out or the call
degrades, and which audio can go. Only the latest audio, or an utterance under way or owed
a final, may hold unanswered words: older audio was silence to the VAD, so no replay starts
with a burst of 30 s. The streams act; this keeps the books and never calls anyone.
"""

from __future__ import annotations

from voiced.audio import MULAW_8K, AudioFormat
from voiced.stt.audio_log import TRIM_SLACK_BYTES, AudioLog
from voiced.stt.local import PREROLL_MS

#: The most audio kept for a replay: longer than any utterance, short enough to resend in a blink.
REPLAY_MAX_MS = 30_000
#: More than a service takes to answer speech with a partial: older audio without one was silence.
UNANSWERED_MS = 5_000


class StreamLedger:
    """One call's books; used on the reactor thread only, by its stream."""

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
        self.words_open = False  # words came after the last final (across streams: a retry keeps it)
        # Where the utterance began that the call ended (flush) and whose final has not come yet.
        self.owed_from: int | None = None
        # Where the call's audio had got to when that final became owed (read only while one is).
        self.owed_since = 0

    # -- the caller's side (VAD hints) --------------------------------------------------------

    def speech_started(self, ms_ago: int = 0) -> None:
        if self.speech_at is None:
            self.speech_at = max(self.audio.start, self.audio.end - self.format.bytes_per_ms() * ms_ago)

    def utterance_over(self) -> int | None:
        """The caller stopped speaking: where that utterance began (None without a VAD hint)."""
        speech_at, self.speech_at = self.speech_at, None
        return speech_at

    def _owe_from(self, speech_at: int | None) -> None:
        """A final is owed for the turn that began at ``speech_at`` (without a VAD hint: all
        that is not settled), and for any earlier one still owed."""
        began = speech_at if speech_at is not None else self.settled_at
        if self.owed_from is None:
            self.owed_since = self.audio.end
        self.owed_from = began if self.owed_from is None else min(self.owed_from, began)

    # -- the service's side (finals) ------------------------------------------------------------

    def _settle_final(self, base: int, end_s: float, sent_upto: int) -> None:
        """A final of the stream that began at ``base`` ends ``end_s`` seconds into it: its audio
        is settled. A server that gives no time: all that was sent, so a replay can never
        repeat this final."""
        end = self._bytes_at(end_s)
        self.settled_at = max(self.settled_at, base + end if end > 0 else sent_upto)

    def _bytes_at(self, seconds: float) -> int:
        """Whole samples, so a replay never starts half-way through a 16-bit one."""
        fmt = self.format
        return round(seconds * fmt.sample_rate) * fmt.bytes_per_sample

    # -- what to replay, hand over, forget ------------------------------------------------------

    def replay_start(self) -> int:
        """A new stream opens: where its replay starts."""
        self.settle_unanswerable()
        return max(self.settled_at, self.audio.start)

    def hand_over(self) -> bytes:
        """Retries exhausted: the audio that may still hold words, for the fallback, which
        answers for any final owed. Settled from now on: never replayed."""
        self.settle_unanswerable()
        self.owed_from = None
        self.words_open = False
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
        if utterances_at is None and self.words_open:
            return  # words under way, and no VAD hint where they began: keep them all
        unanswered = self.audio.end - self.unanswered_bytes
        if utterances_at is not None:
            unanswered = min(unanswered, utterances_at)
        self.settled_at = max(self.settled_at, unanswered)

    def forget_old_audio(self) -> None:
        audio = self.audio
        if max(self.settled_at, audio.end - self.replay_max_bytes) - audio.start < TRIM_SLACK_BYTES:
            return  # per frame: nothing could be cut yet (the cut only goes further back than this)
        needed = self.settled_at
        utterances_at = self.utterances_at()
        if utterances_at is not None:
            needed = min(needed, utterances_at)  # for a degraded mode's utterance
        self.audio.forget_before(max(needed, self.audio.end - self.replay_max_bytes))
