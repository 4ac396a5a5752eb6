"""One call's recording as the caller lived it: two channels on one clock.

The recording's time zero is the call's start (its record's ``started_at``), so a moment
of the call's transcript (``started_at`` + N seconds) is N seconds into the file. The
caller channel advances with the caller's frames, each placed where it arrived: frames
that come late in a burst (a stall on the way) are laid end to end as they were spoken,
a gap that lasts (frames that never came) is filled with silence, and a channel that ran
ahead of the clock drops frames until it is back; either way it never drifts more than
``DRIFT_LIMIT_S`` from the clock the transcript is timed by. The bot channel is what the
carrier plays: each chunk of the bot's audio starts when it is sent or when the audio
before it ends, whichever is later (the carrier's queue plays in order, in real time),
and a ``clear`` (barge-in) drops whatever had not played yet.

Nothing is written ahead of the caller's clock: bot audio waits here until the caller's
channel reaches it, so a clear can still take it back. What comes out is 16-bit PCM,
two channels interleaved (caller left, bot right), in whole samples. Pure: times are
handed in, nothing is read or written.
"""

from __future__ import annotations

from collections import deque

from voiced.audio import SAMPLE_RATE, audioop

#: How far the caller channel may run behind or ahead of the clock before it is brought back
#: (silence added, frames dropped). The call itself takes 200 ms without audio as silence.
DRIFT_LIMIT_S = 0.2
CALLER_CHANNEL, BOT_CHANNEL = 0, 1  # left, right


def stereo(caller_pcm: bytes, bot_pcm: bytes) -> bytes:
    """Two equally long 16-bit mono signals as one interleaved stereo signal."""
    return audioop.add(audioop.tostereo(caller_pcm, 2, 1, 0), audioop.tostereo(bot_pcm, 2, 0, 1), 2)


class Timeline:
    def __init__(self, origin: float, drift_limit_s: float = DRIFT_LIMIT_S) -> None:
        self.origin = origin  # clock time of the recording's first sample
        self._drift_limit = round(drift_limit_s * SAMPLE_RATE)
        self.written = 0  # samples handed out, both channels (the caller's clock)
        self.bot_end = 0  # where the bot audio queued so far will have played
        # Bot audio not yet written: (first sample, mu-law), in order, never overlapping.
        self._bot: deque[tuple[int, bytes]] = deque()
        self.caller_silence_filled = 0  # samples of silence standing in for frames that never came
        self.caller_dropped = 0  # samples of caller audio dropped to bring the channel back to the clock
        self.bot_cleared = 0  # samples of bot audio a clear took back before they played

    def position(self, now: float) -> int:
        """The sample of the recording that clock time ``now`` is."""
        return max(0, round((now - self.origin) * SAMPLE_RATE))

    @property
    def unplayed_bot_samples(self) -> int:
        written = self.written  # an entry that began before it is partly written already
        return sum(start + len(audio) - max(start, written) for start, audio in self._bot)

    # ---- the call's audio ------------------------------------------------------------------------
    def caller(self, ulaw: bytes, now: float) -> bytes:
        """The caller's frame (8 kHz mu-law) that arrived at ``now``: the stereo audio it
        completes (b"" for a frame dropped because the channel ran ahead of the clock)."""
        arrived = self.position(now)  # where the frame ends if it is on time
        start = arrived - len(ulaw)
        if self.written - start > self._drift_limit:
            self.caller_dropped += len(ulaw)
            return b""
        out = b""
        if start - self.written > self._drift_limit:
            gap = start - self.written
            self.caller_silence_filled += gap
            out = self._emit(bytes(2 * gap))
        return out + self._emit(audioop.ulaw2lin(ulaw, 2))

    def bot(self, ulaw: bytes, now: float) -> None:
        """The bot's audio (8 kHz mu-law) sent to the carrier at ``now``."""
        if not ulaw:
            return
        start = max(self.position(now), self.bot_end, self.written)
        self._bot.append((start, ulaw))
        self.bot_end = start + len(ulaw)

    def clear(self, now: float) -> None:
        """The carrier was told to drop what it had not played: from ``now`` on the bot is silent."""
        cut = max(self.position(now), self.written)
        kept: deque[tuple[int, bytes]] = deque()
        for start, audio in self._bot:
            if start >= cut:
                self.bot_cleared += len(audio)
            elif start + len(audio) > cut:
                self.bot_cleared += start + len(audio) - cut
                kept.append((start, audio[: cut - start]))
            else:
                kept.append((start, audio))
        self._bot = kept
        self.bot_end = min(self.bot_end, cut)

    def finish(self, now: float) -> bytes:
        """The call ended at ``now``: the stereo audio up to then (the caller silent where no
        frame came); bot audio queued beyond it never played."""
        end = self.position(now)
        out = self._emit(bytes(2 * (end - self.written))) if end > self.written else b""
        self.bot_cleared += self.unplayed_bot_samples
        self._bot.clear()
        return out

    # ---- internals -------------------------------------------------------------------------------
    def _emit(self, caller_pcm: bytes) -> bytes:
        """The next stretch of the caller channel with the bot audio that played under it."""
        count = len(caller_pcm) // 2
        if not count:
            return b""
        begin, end = self.written, self.written + count
        bot = bytearray(2 * count)
        queue = self._bot
        while queue and queue[0][0] < end:
            start, audio = queue[0]
            stop = start + len(audio)
            lo, hi = max(start, begin), min(stop, end)
            if hi > lo:
                bot[2 * (lo - begin): 2 * (hi - begin)] = audioop.ulaw2lin(audio[lo - start: hi - start], 2)
            if stop <= end:
                queue.popleft()
            else:
                break
        self.written = end
        return stereo(caller_pcm, bytes(bot))
