"""A reply whose audio comes ready to play: a speech-to-speech model's (``voiced.call.speech_to_speech``).

It is a ``Reply`` to the line (``voiced.call.playback``): the same ``<id>.start`` /
``<id>.s<k>`` / ``<id>.end`` marks, the same playout clock, barge-in ``clear`` and end-mark
watchdog. What differs is what goes between the marks: each chunk of the model's audio is
sent the moment it arrives (no sentence, no synthesis), as one segment followed by its
mark; the words are the model's own transcript of its audio, which streams beside it.

What the caller heard is counted in audio, not sentences: every byte before the last
echoed mark, plus, at a barge-in, the part of the next chunk that played between that
echo (or the chunk's arrival, if the line had run dry) and the ``clear``. That count is
the ``audio_end_ms`` the model's item is truncated at, and the history's words are the
transcript cut at the same fraction.
"""

from __future__ import annotations

from twisted.logger import Logger

from voiced.agent.base import Said
from voiced.audio import SAMPLE_RATE
from voiced.call.reply import AUDIO_CHUNK_BYTES, Reply, Segment, words_reached

log = Logger(namespace="voiced.call")


class StreamedReply(Reply):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.transcript = ""
        self.bytes_sent = 0
        self._sent_at: list[float] = []  # per segment: when it went out
        self._items: list[tuple[str, int]] = []  # (model item id, the byte its audio starts at)

    @property
    def spoken_text(self) -> str:  # type: ignore[override]
        return self.transcript

    def audio(self, chunk: bytes, item_id: str) -> None:
        """More of the model's audio (8 kHz mu-law): on the line now."""
        if self.cancelled or self.complete or not chunk:
            return
        call, transport = self.call, self.call.transport
        first = not self.audio_started
        if first:
            self.audio_started = True
            transport.send_mark(f"{self.mark_prefix}.start")
            self.first_sentence_mark = "start"  # its echo: the caller starts hearing the reply
            call.first_audio_ready(self)
        if not self._items or self._items[-1][0] != item_id:
            self._items.append((item_id, self.bytes_sent))
        segment = Segment(len(self.segments), "", True, len(chunk), True, chunks=[chunk])
        self.segments.append(segment)
        self._sent_at.append(call.clock.seconds())
        for i in range(0, len(chunk), AUDIO_CHUNK_BYTES):
            transport.send_audio(chunk[i : i + AUDIO_CHUNK_BYTES])
        self.bytes_sent += len(chunk)
        call.audio_queued(self, chunk, first)
        transport.send_mark(f"{self.mark_prefix}.s{segment.index}")

    def transcribed(self, delta: str) -> None:
        if not self.cancelled and delta:
            if not self.transcript:
                self.call.reply_text_known(self)
            self.transcript += delta

    def transcript_done(self, text: str) -> None:
        if not self.cancelled and text:
            if not self.transcript:
                self.call.reply_text_known(self)
            self.transcript = text

    def played_bytes(self, cut_at: float | None = None) -> int:
        """Bytes of this reply the caller heard: those before the last echoed mark, and with
        ``cut_at`` (the clock time of the clear) the part of the next chunk played by then."""
        heard = 0
        previous_echo = self.playback_started_at
        for segment, sent_at in zip(self.segments, self._sent_at):
            if segment.echoed_at is not None:
                heard += segment.audio_bytes
                previous_echo = segment.echoed_at
                continue
            if cut_at is not None and previous_echo is not None:
                # It began playing once the audio before it had, or when it came if the line was idle.
                began = max(previous_echo, sent_at)
                heard += max(0, min(segment.audio_bytes, round((cut_at - began) * SAMPLE_RATE)))
            break
        return heard

    def heard_in_item(self, cut_at: float) -> tuple[str, int] | None:
        """The model item playing at ``cut_at`` and how many of its bytes were heard (None: no audio out)."""
        if not self._items:
            return None
        heard = self.played_bytes(cut_at)
        item_id, start = self._items[0]
        for later_id, later_start in self._items[1:]:
            if later_start < heard:
                item_id, start = later_id, later_start
        return item_id, heard - start

    def heard(self, cut_at: float | None = None, assume_played: bool = False) -> Said | None:
        heard_bytes = self.bytes_sent if assume_played and cut_at is None else self.played_bytes(cut_at)
        if not self.transcript or heard_bytes <= 0:
            return None
        fraction = heard_bytes / self.bytes_sent if self.bytes_sent else 0.0
        text = words_reached(self.transcript, fraction)
        if not text:
            return None
        return Said("bot", text, interrupted=cut_at is not None and fraction < 1)

    def finish(self) -> None:
        """The model is done with this reply: the end mark follows its audio."""
        if self.cancelled or self.complete:
            return
        self.complete = True
        log.info("BOT call={call} reply={reply} actions={actions} text={text!r}", call=self.call.call_id,
                 reply=self.mark_prefix, actions=",".join(type(a).__name__ for a in self.actions) or "-",
                 text=self.transcript)
        self.call.transport.send_mark(f"{self.mark_prefix}.end")
        self.end_overdue = self.call.expect_end_mark(self)
        self.call.reply_sent(self)
