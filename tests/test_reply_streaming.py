"""A reply's audio goes to the carrier as the TTS streams it: the first chunk of a sentence is on
the line before the vendor has finished the sentence (the loopback ElevenLabs, driven by hand),
sentences stay in order with their marks, and a barge-in closes the vendor's response."""

from __future__ import annotations

from typing import Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.fakes.http_apps import make_http_client
from tests.fakes.tts_servers import Answer, TTSFake
from voiced.call.reply import Reply, ReplyKind
from voiced.config import Settings
from voiced.tts.elevenlabs import ElevenLabsTTSEngine
from voiced.tts.speaker import PhraseCache, Speaker

KEY = "el-key-for-tests"


class RecordingTransport:
    """The carrier side: what went on the line, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []

    def send_audio(self, ulaw: bytes) -> None:
        self._add(("audio", ulaw))

    def send_mark(self, name: str) -> None:
        self._add(("mark", name))

    def send_clear(self) -> None:
        self._add(("clear", None))

    def hang_up(self) -> None:
        self._add(("hang_up", None))

    def _add(self, event: tuple[str, object]) -> None:
        self.events.append(event)
        for waiter in [w for w in self._waiters if w[0]()]:
            self._waiters.remove(waiter)
            # On the next reactor turn: whatever the reply does after sending this goes first.
            reactor.callLater(0, waiter[1].callback, None)

    def when(self, condition: Callable[[], bool]) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if condition():
            d.callback(None)
        else:
            self._waiters.append((condition, d))
        return d

    @property
    def audio(self) -> bytes:
        return b"".join(data for kind, data in self.events if kind == "audio")  # type: ignore[misc]

    @property
    def marks(self) -> list[str]:
        return [data for kind, data in self.events if kind == "mark"]  # type: ignore[misc]


class Host:
    """What a reply reads of its call (the ReplyHost a Playback is), recording what it is told."""

    def __init__(self, speaker: Speaker) -> None:
        self.call_id = "CA-stream"
        self.clock = reactor
        self.transport = RecordingTransport()
        self.speaker = speaker
        self.told: list[str] = []
        self.end_watch = None

    def reply_text_known(self, reply: Reply) -> None:
        self.told.append("text_known")

    def first_audio_ready(self, reply: Reply) -> None:
        self.told.append("first_audio_ready")

    def audio_queued(self, reply: Reply, audio: bytes, first_sentence: bool) -> None:
        self.told.append(f"queued {len(audio)} first={first_sentence}")

    def reply_sent(self, reply: Reply) -> None:
        self.told.append("sent")

    def filler_played(self, reply: Reply) -> None:
        self.told.append("filler")

    def expect_end_mark(self, reply: Reply):
        self.end_watch = reactor.callLater(60, lambda: None)
        return self.end_watch


class ReplyStreamingTests(TestCase):
    def setUp(self) -> None:
        self.fake = TTSFake("elevenlabs", api_key=KEY)
        self.fake.listen()
        self.addCleanup(self.fake.stop)
        settings = Settings.load({}, {"VOICED_TTS": "elevenlabs", "ELEVENLABS_API_KEY": KEY,
                                      "VOICED_ELEVENLABS_BASE_URL": self.fake.url})
        engine = ElevenLabsTTSEngine(make_http_client(self), settings, reactor)
        self.host = Host(Speaker(engine, None, PhraseCache()))
        self.reply = Reply(self.host, ReplyKind.ANSWER, 1, None)
        self.addCleanup(self.reply.stop_waiting_for_end)

    async def test_the_first_chunk_is_on_the_line_before_the_sentence_is_synthesized(self):
        self.fake.answer(Answer.manual(), Answer.manual())
        transport = self.host.transport
        self.reply.text("Your appointment is on Tuesday. See ")
        self.reply.text("you then.")
        self.reply.finish()
        # Both sentences are asked for at once (two connections: either may arrive first).
        exchanges = [await self.fake.exchange(0), await self.fake.exchange(1)]
        by_text = {exchange.text: exchange for exchange in exchanges}
        first, second = by_text["Your appointment is on Tuesday."], by_text["See you then."]
        # The second sentence's audio comes first: it waits for the first sentence.
        second.send(b"\x02" * 400)
        first.send(b"\x01" * 800)
        await transport.when(lambda: len(transport.audio) == 800)
        self.assertFalse(first.finished)  # the vendor is still synthesizing the sentence
        self.assertEqual(transport.marks, ["r1.start"])
        self.assertEqual(transport.audio, b"\x01" * 800)
        self.assertEqual(self.host.told[:2], ["text_known", "first_audio_ready"])
        first.send(b"\x01" * 300)
        first.finish()
        # The first sentence's mark, then what was kept of the second, then the rest as it comes.
        await transport.when(lambda: "r1.s0" in transport.marks and len(transport.audio) == 1500)
        second.send(b"\x02" * 100)
        second.finish()
        await transport.when(lambda: "r1.end" in transport.marks)
        self.assertEqual(transport.marks, ["r1.start", "r1.s0", "r1.s1", "r1.end"])
        self.assertEqual(transport.audio, b"\x01" * 1100 + b"\x02" * 500)
        self.assertEqual([s.audio_bytes for s in self.reply.segments], [1100, 500])
        self.assertEqual(self.reply.tts_engines, ["elevenlabs"])
        self.assertEqual([t for t in self.host.told if t.startswith("queued")],
                         ["queued 800 first=True", "queued 300 first=False", "queued 400 first=False",
                          "queued 100 first=False"])
        self.assertEqual(self.fake.problems, [])

    async def test_a_barge_in_closes_the_vendor_response(self):
        self.fake.answer(Answer.manual())
        transport = self.host.transport
        self.reply.sentence("A long sentence the caller will cut.")
        exchange = await self.fake.exchange(0)
        exchange.send(b"\x01" * 400)
        await transport.when(lambda: len(transport.audio) == 400)
        self.reply.cancel()
        await exchange.lost  # the vendor stops synthesizing what nobody will hear
        self.assertEqual(transport.marks, ["r1.start"])  # no mark for a sentence cut short
        heard = self.reply.heard(cut_at=reactor.seconds())
        self.assertIsNone(heard)  # the start was never echoed: nothing is known to be heard


class ReplayTests(TestCase):
    def test_a_replay_behind_a_closed_gate_keeps_each_sentence_apart(self):
        from voiced.call.reply import Segment

        host = Host(Speaker(None, None, PhraseCache()))  # type: ignore[arg-type]  (nothing is synthesized)
        gate: Deferred[None] = Deferred()
        reply = Reply(host, ReplyKind.ANSWER, 2, None, gate)
        reply.replay([Segment(0, "One.", True, chunks=[b"\x01" * 10]),
                      Segment(1, "Two.", True, chunks=[b"\x02" * 20])], [])
        gate.callback(None)
        self.assertEqual(host.transport.marks, ["r2.start", "r2.s0", "r2.s1"])
        self.assertEqual([(s.text, s.audio_bytes) for s in reply.segments], [("One.", 10), ("Two.", 20)])
