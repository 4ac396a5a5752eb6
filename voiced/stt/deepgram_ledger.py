"""What a call's Deepgram results have settled, and what they still owe (``Ledger``).

The call's recent audio (``AudioLog``) is addressed by absolute byte offsets since the
call began, in the stream's format. A final settles its audio: Deepgram's ``start`` and
``duration`` are seconds of the stream's own audio, so a stream that began at offset
``base`` has settled up to ``base + (start + duration)``. Whatever is not settled is what
a new stream replays after a failure (so no caller word is lost) or what the fallback
transcriber gets when the retries run out. Only the latest audio, or an utterance under
way or owed a final, may hold unanswered words: older audio was silence to the VAD, so no
replay starts with a burst of 30 s. The stream (``voiced.stt.deepgram``) acts; this keeps
the books and never calls anyone.
"""

from __future__ import annotations

from voiced.audio import MULAW_8K, AudioFormat

#: The most audio kept for a replay: longer than any utterance, short enough to resend in a blink.
REPLAY_MAX_MS = 30_000
#: More than Deepgram takes to answer speech with an interim: older audio without one was silence.
UNANSWERED_MS = 5_000
#: Audio kept before the VAD's speech start (it fires a little after the first syllable).
PREROLL_MS = 300
#: Dead audio is cut off the buffer in slices, not per frame (a bytearray shifts on every cut).
_TRIM_SLACK_BYTES = 8000


class AudioLog:
    """The call's recent audio, addressed by absolute offsets since the call began."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + len(self._buf)

    def append(self, audio: bytes) -> None:
        self._buf += audio

    def since(self, offset: int) -> bytes:
        return bytes(self._buf[max(offset, self.start) - self.start:])

    def forget_before(self, offset: int) -> None:
        if offset - self.start >= _TRIM_SLACK_BYTES:
            cut = min(offset - self.start, len(self._buf))
            del self._buf[:cut]
            self.start += cut


class Ledger:
    """One call's books; used on the reactor thread only, by its DeepgramSTTStream."""

    def __init__(self, audio: AudioFormat = MULAW_8K) -> None:
        self.format = audio
        per_ms = audio.bytes_per_ms()
        self._replay_max_bytes = per_ms * REPLAY_MAX_MS
        self._unanswered_bytes = per_ms * UNANSWERED_MS
        self._preroll_bytes = per_ms * PREROLL_MS
        self.audio = AudioLog()
        # Audio before this offset needs no replay: finalized, handed to the fallback, or silence.
        self.settled_at = 0
        self.speech_at: int | None = None  # where the current utterance began (VAD hint)
        self.words_open = False  # an interim with words came after the last final (across streams)
        # Where the utterance began that the call ended (flush) and whose final has not come yet.
        self.owed_from: int | None = None

    # -- the caller's side (VAD hints) --------------------------------------------------------

    def speech_started(self) -> None:
        if self.speech_at is None:
            self.speech_at = self.audio.end

    def utterance_over(self) -> int | None:
        """The caller stopped speaking: where that utterance began (None without a VAD hint)."""
        speech_at, self.speech_at = self.speech_at, None
        return speech_at

    def owe_final(self, speech_at: int | None) -> bool:
        """The turn ended: a final is owed for words not finalized yet, or for speech the VAD
        heard that nothing answered. Whether one is owed now (this turn's, or an earlier one)."""
        if self.words_open or speech_at is not None:
            began = speech_at if speech_at is not None else self.settled_at
            self.owed_from = began if self.owed_from is None else min(self.owed_from, began)
        return self.owed_from is not None

    @property
    def mid_utterance(self) -> bool:
        return self.words_open or self.speech_at is not None

    # -- the service's side (results) -------------------------------------------------------

    def interim(self, transcript: str) -> str:
        text = transcript.strip()
        if text:
            self.words_open = True
        return text

    def final(self, base: int, end_s: float, sent_upto: int) -> None:
        """A final of the stream that began at ``base``: its audio, up to ``end_s`` seconds into
        the stream, is settled (all that was sent, if the server gives no times)."""
        end = self._bytes_at(end_s)
        self.settled_at = max(self.settled_at, base + end if end > 0 else sent_upto)
        self.words_open = False
        self.owed_from = None

    def _bytes_at(self, seconds: float) -> int:
        """Whole samples, so a replay never starts half-way through a 16-bit one."""
        fmt = self.format
        return round(seconds * fmt.sample_rate) * fmt.bytes_per_sample

    # -- what to replay, hand over, forget ------------------------------------------------------

    def replay_start(self) -> int:
        """A new stream opens: where its replay starts."""
        self._settle_unanswerable()
        return max(self.settled_at, self.audio.start)

    def hand_over(self) -> bytes:
        """Retries exhausted: the audio that may still hold words, for the fallback, which
        answers for any final owed. Settled from now on: never replayed."""
        self._settle_unanswerable()
        self.owed_from = None
        self.words_open = False
        audio = self.audio.since(self.settled_at)
        self.settled_at = self.audio.end
        return audio

    def utterance_audio(self) -> bytes:
        """The utterance under way, from just before it began (for a whole-utterance fallback)."""
        if self.speech_at is None:
            return b""
        return self.audio.since(max(self.settled_at, self.speech_at - self._preroll_bytes))

    def _utterances_at(self) -> int | None:
        starts = [at - self._preroll_bytes for at in (self.speech_at, self.owed_from) if at is not None]
        return min(starts) if starts else None

    def _settle_unanswerable(self) -> None:
        utterances_at = self._utterances_at()
        if utterances_at is None and self.words_open:
            return  # words under way, and no VAD hint where they began: keep them all
        unanswered = self.audio.end - self._unanswered_bytes
        if utterances_at is not None:
            unanswered = min(unanswered, utterances_at)
        self.settled_at = max(self.settled_at, unanswered)

    def forget_old_audio(self) -> None:
        needed = self.settled_at
        utterances_at = self._utterances_at()
        if utterances_at is not None:
            needed = min(needed, utterances_at)
        self.audio.forget_before(max(needed, self.audio.end - self._replay_max_bytes))
