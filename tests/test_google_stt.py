"""Google streaming STT through the real google-cloud-speech client, against the loopback emulator.

The caller's "speech" is a buzz (a 125 Hz harmonic tone the VAD takes for a voice)
whose waveform encodes an utterance number; the emulator's scripted recognizer
reads the numbers back, so a test knows exactly which words each final carries.
"""

from __future__ import annotations


from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.google import FallbackTranscriber, GoogleEmulatorCase, Recorder, buzz, until
from voiced.audio import FRAME_BYTES, SAMPLE_RATE, silence_ulaw
from voiced.audio import MULAW_8K
from voiced.config import Settings
from voiced.emulator.faults import FaultPlan
from voiced.google import stt as google_stt, stt_session, stt_stream
from voiced.google.stt import recognition_config
from voiced.stt.audio_log import AudioLog
from voiced.stt.ledger import UNANSWERED_MS
from voiced.stt.recovery import OWED_URGENT_MS
from voiced.lifecycle import construction_counts
from voiced.retry import Backoff


def utterance(n: int, speech_ms: int = 1000, silence_ms: int = 1000) -> bytes:
    return buzz(n, speech_ms) + silence_ulaw(silence_ms)


def conversation(first: int, last: int) -> bytes:
    return b"".join(utterance(n) for n in range(first, last + 1))


async def feed_paced(stream, audio: bytes, speed: float) -> None:
    """Feed 20 ms frames at ``speed`` x real time, as a carrier would (only faster)."""
    per_tick = max(1, int(speed * 0.005 * 1000 / 20))  # frames per 5 ms tick
    frames = [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]
    for i in range(0, len(frames), per_tick):
        for frame in frames[i : i + per_tick]:
            stream.feed(frame)
        await deferLater(reactor, 0.005)


class StreamingTests(GoogleEmulatorCase):
    async def test_partials_then_finals(self) -> None:
        engine = self.start_engine()
        self.assertEqual((engine.name, engine.streaming), ("google", True))
        stream, listener = self.open(engine)
        await feed_paced(stream, conversation(1, 3), speed=20)
        await until(lambda: len(listener.of("final")) == 3, what="three finals")
        self.assertEqual(listener.of("final"), ["utterance 1", "utterance 2", "utterance 3"])
        self.assertIn("utterance 1", listener.of("partial"))
        # Every partial comes before its utterance's final.
        kinds = [e for e in listener.events if e[1] == "utterance 2"]
        self.assertEqual(kinds[-1], ("final", "utterance 2"))
        self.assertEqual(self.emulator.stats.streams_started, 1)
        self.assertEqual(listener.of("failure"), [])

    async def test_the_end_of_a_turn_leaves_nothing_in_a_batch(self) -> None:
        engine = self.start_engine()
        stream, _ = self.open(engine)
        stream.feed(silence_ulaw(20))  # opens the stream
        await until(lambda: stream._session is not None, what="a stream")
        for _ in range(5):  # 100 ms: less than any batch
            stream.feed(silence_ulaw(20))
        session = stream._session
        self.assertLess(session.sent_upto, stream._ledger.audio.end)
        stream._ledger.heard_since_speech = True  # as after a final: none is owed for this turn
        stream.flush()
        self.assertIsNone(stream._ledger.owed_from)
        self.assertEqual(session.sent_upto, stream._ledger.audio.end)

    async def test_a_final_owed_for_a_second_gets_its_audio_in_small_batches(self) -> None:
        # Frame by frame while the final is due; once it is late (the service, or this process,
        # is behind), 100 ms batches: fifty messages a second per late call would feed the lag.
        engine = self.start_engine()
        stream, _ = self.open(engine)
        stream.feed(silence_ulaw(20))  # opens the stream
        await until(lambda: stream._session is not None, what="a stream")
        session, ledger = stream._session, stream._ledger
        stream.speech_started()
        stream.flush()  # the turn ended before any answer: its final is owed
        self.assertIsNotNone(ledger.owed_from)
        for _ in range(OWED_URGENT_MS // 20):
            stream.feed(silence_ulaw(20))
            self.assertEqual(session.sent_upto, ledger.audio.end)  # each frame as it comes
        behind = []
        for _ in range(10):
            stream.feed(silence_ulaw(20))
            behind.append((ledger.audio.end - session.sent_upto) // 160)
        self.assertEqual(behind, [1, 2, 3, 4, 0, 1, 2, 3, 4, 0])  # a request per 100 ms

    async def test_close_ends_the_stream_and_delivers_nothing_more(self) -> None:
        engine = self.start_engine()
        stream, listener = self.open(engine)
        await feed_paced(stream, buzz(1, 900), speed=20)  # mid-utterance
        await until(lambda: self.emulator.stats.active_streams == 1, what="a stream")
        stream.close()
        before = list(listener.events)
        await until(lambda: self.emulator.stats.active_streams == 0, what="the stream to end")
        await until(lambda: not self.clients.speech_loop.active, what="the stream's task done")
        opened = stream.streams_opened
        stream.feed(silence_ulaw(1000))
        self.assertEqual(stream.streams_opened, opened)  # audio after close opens no stream
        # Both ends have ended the one stream: nothing is left that could deliver.
        self.assertEqual(listener.events, before)
        self.assertEqual(self.clients.speech_loads, [0] * self.settings.google_channels)

    async def test_unavailable_mid_utterance_is_retried_with_replay(self) -> None:
        # Stream 1 fails after its first response (a partial of utterance 1), streams 2
        # and 3 fail at once, stream 4 works: the backoff grows until a response resets it.
        engine = self.start_engine(FaultPlan(status="UNAVAILABLE", every_nth=1, after_responses=1))

        def escalate(line: str) -> None:
            if "attempt=1 " in line:
                self.emulator.set_faults(FaultPlan(status="UNAVAILABLE", every_nth=1, after_responses=0))
            elif "attempt=3 " in line:
                self.emulator.set_faults(FaultPlan())

        self.logs.hooks.append(escalate)
        stream, listener = self.open(engine, "CA-retry")
        await feed_paced(stream, conversation(1, 3), speed=5)
        await until(lambda: len(listener.of("final")) == 3, what="three finals")
        self.assertEqual(
            self.logs.starting("STT_RETRY"),
            [
                "STT_RETRY call=CA-retry error=ServiceUnavailable attempt=1 delay_ms=200",
                "STT_RETRY call=CA-retry error=ServiceUnavailable attempt=2 delay_ms=400",
                "STT_RETRY call=CA-retry error=ServiceUnavailable attempt=3 delay_ms=800",
            ],
        )
        # The partial came from stream 1; the final of the same words from stream 4's replay.
        self.assertEqual(listener.events[0], ("partial", "utterance 1"))
        self.assertEqual(listener.of("final"), ["utterance 1", "utterance 2", "utterance 3"])
        self.assertEqual(listener.of("failure"), [])
        self.assertEqual(stream.streams_opened, 4)

    async def test_retries_exhausted_then_fallback_then_a_fresh_budget(self) -> None:
        fallback = FallbackTranscriber()
        engine = self.start_engine(
            FaultPlan(status="INTERNAL", every_nth=1), fallback=fallback, backoff=Backoff(0.01, 0.04, 4)
        )
        stream, listener = self.open(engine)
        audio = buzz(1, 1200)
        for i in range(0, len(audio), FRAME_BYTES):
            stream.feed(audio[i : i + FRAME_BYTES])
        await until(lambda: listener.of("failure"), what="the failure")
        # Until the cool-down after the give-up ends: a retry scheduled anyway, never longer than
        # the longest backoff, would have run by then.
        await until(lambda: stream._waiting is None, what="the cool-down's end")
        self.assertEqual(len(listener.of("failure")), 1)
        self.assertIn("InternalServerError", listener.of("failure")[0])
        self.assertEqual(self.emulator.stats.streams_started, 5)  # the first try and 4 retries
        self.assertEqual([len(a) for a in fallback.calls], [len(audio)])
        self.assertEqual(listener.of("final"), [f"fallback heard {len(audio)} bytes"])
        self.assertEqual(len(self.logs.starting("STT_RETRY")), 4)

        # The service is back: the next audio opens a stream with a fresh budget, and
        # the audio the fallback took is not replayed.
        self.emulator.set_faults(FaultPlan())
        await feed_paced(stream, silence_ulaw(500) + utterance(2), speed=20)
        await until(lambda: len(listener.of("final")) == 2, what="the next final")
        self.assertEqual(listener.of("final")[1], "utterance 2")
        self.assertEqual(len(listener.of("failure")), 1)

    async def test_fallback_is_bounded_in_time(self) -> None:
        fallback = FallbackTranscriber(hang=True)
        engine = self.start_engine(
            FaultPlan(every_nth=1), fallback=fallback, backoff=Backoff(0.01, 0.01, 1), stt_fallback_timeout_ms=100
        )
        stream, listener = self.open(engine)
        stream.feed(buzz(1, 500))
        await until(lambda: fallback.calls, what="the fallback")
        self.assertEqual(len(listener.of("failure")), 1)
        await until(lambda: fallback.cancelled == 1, timeout=2, what="the fallback cancelled")
        self.assertEqual(listener.of("final"), [])

    async def test_unsupported_language_is_reported_once_then_degrades(self) -> None:
        fallback = FallbackTranscriber()
        engine = self.start_engine(fallback=fallback, language="he-IL", stt_model="phone_call")
        stream, listener = self.open(engine)
        stream.speech_started()
        await feed_paced(stream, buzz(1, 600), speed=20)
        await until(lambda: listener.of("failure"), what="the failure")
        (reason,) = listener.of("failure")
        for needed in ("phone_call", "he-IL", "InvalidArgument", "not supported for language", "--stt-model"):
            self.assertIn(needed, reason)
        self.assertEqual(len(self.logs.starting("STT_DEGRADED")), 1)
        self.assertEqual(self.logs.starting("STT_RETRY"), [])

        # Whole utterances from now on: the utterance in progress is kept, flush delivers.
        await feed_paced(stream, buzz(1, 400), speed=20)
        stream.flush()
        self.assertEqual(len(fallback.calls), 1)
        self.assertGreaterEqual(len(fallback.calls[0]), len(buzz(1, 1000)))
        stream.speech_started()
        stream.feed(buzz(2, 800))
        stream.flush()
        self.assertEqual(len(listener.of("final")), 2)
        self.assertEqual(self.emulator.stats.streams_started, 1)
        self.assertEqual(len(listener.of("failure")), 1)

    async def test_degraded_without_fallback_still_ends_each_turn(self) -> None:
        engine = self.start_engine(language="he-IL", stt_model="phone_call")
        stream, listener = self.open(engine)
        stream.feed(buzz(1, 400))
        await until(lambda: listener.of("failure"), what="the failure")
        stream.flush()
        self.assertEqual(listener.of("final"), [""])


class FailurePathTests(GoogleEmulatorCase):
    async def test_streams_that_each_die_after_a_partial_end_in_the_give_up(self) -> None:
        # A proxy resetting every stream right after its first answer: a partial is no
        # progress, so the budget runs out and the fallback answers the utterance.
        fallback = FallbackTranscriber()
        engine = self.start_engine(FaultPlan(status="UNAVAILABLE", every_nth=1, after_responses=1),
                                   fallback=fallback, backoff=Backoff(0.01, 0.04, 4))
        stream, listener = self.open(engine, "CA-reset")
        stream.speech_started()
        stream.feed(utterance(1))
        stream.flush()
        await until(lambda: listener.of("failure"), what="the give-up")
        await until(lambda: stream._waiting is None, what="the cool-down's end")  # no stray retry ran
        self.assertEqual(stream.streams_opened, 5)  # the first try and 4 retries, no more
        self.assertEqual([line.split()[3] for line in self.logs.starting("STT_RETRY")],
                         ["attempt=1", "attempt=2", "attempt=3", "attempt=4"])
        self.assertEqual(len(self.logs.starting("STT_GAVE_UP")), 1)
        self.assertEqual(listener.of("partial"), ["utterance 1"] * 5)
        self.assertEqual(listener.of("final"), [f"fallback heard {len(utterance(1))} bytes"])

    async def test_a_retry_replays_the_utterance_not_the_whole_silence_before_it(self) -> None:
        fallback = FallbackTranscriber()
        engine = self.start_engine(FaultPlan(status="UNAVAILABLE", every_nth=1, after_responses=1),
                                   fallback=fallback, backoff=Backoff(0.01, 0.04, 2))
        replays: list[int] = []
        original_send = stt_session.Session.send
        self.patch(stt_session.Session, "send", lambda session, audio: (replays.append(len(audio)), original_send(session, audio)))
        stream, listener = self.open(engine, "CA-replay")
        stream.feed(silence_ulaw(12_000))  # the greeting: nobody spoke
        stream.speech_started()
        stream.feed(utterance(1))
        stream.flush()
        await until(lambda: listener.of("failure"), what="the give-up")
        # As at a rollover: the latest 5 s (here more than the utterance and its pre-roll), not 14 s.
        unanswered = UNANSWERED_MS * SAMPLE_RATE // 1000
        self.assertEqual([len(a) for a in fallback.calls], [unanswered])
        self.assertEqual(replays[-2:], [unanswered] * 2)  # each retry's replay

    async def test_degrading_after_the_turn_ended_hands_the_utterance_to_the_fallback(self) -> None:
        # The first stream fails before any answer; by the retry the caller's turn is over,
        # and the service then refuses the configuration: the utterance must not be lost.
        fallback = FallbackTranscriber()
        engine = self.start_engine(FaultPlan(status="UNAVAILABLE", every_nth=1), fallback=fallback,
                                   backoff=Backoff(0.05, 0.05, 2))

        def refuse_from_now_on(line: str) -> None:
            if line.startswith("STT_RETRY"):
                self.emulator.set_faults(FaultPlan())
                engine.configs[MULAW_8K] = recognition_config(Settings(language="he-IL", stt_model="phone_call"))

        self.logs.hooks.append(refuse_from_now_on)
        stream, listener = self.open(engine, "CA-degrade")
        stream.feed(silence_ulaw(200))
        stream.speech_started()
        stream.feed(utterance(1, speech_ms=1200, silence_ms=300))
        stream.flush()  # the turn is over: the call waits for its final
        await until(lambda: listener.of("final"), what="the fallback's final")
        self.assertEqual(len(self.logs.starting("STT_DEGRADED")), 1)
        self.assertEqual(len(fallback.calls), 1)
        self.assertGreaterEqual(len(fallback.calls[0]), len(utterance(1, speech_ms=1200, silence_ms=300)))
        self.assertEqual([kind for kind, _ in listener.events], ["failure", "final"])  # the phrase, then the answer


class MisbehavingServerTests(GoogleEmulatorCase):
    async def test_close_ends_a_stream_never_answered(self) -> None:
        engine = self.start_engine(FaultPlan(hang=True))
        stream, listener = self.open(engine, "CA-wedged")
        stream.speech_started()
        stream.feed(buzz(1, 400))
        await until(lambda: self.emulator.stats.active_streams == 1 and self.clients.speech_loop.active, what="a stream")
        # Both ends hold the stream open, and it waits for a first response that never comes.
        stream.close()
        await until(lambda: not self.clients.speech_loop.active, timeout=1.0, what="the stream's task done")
        await until(lambda: sum(self.clients.speech_loads) == 0, timeout=1.0, what="the channel lease back")
        await until(lambda: self.emulator.stats.active_streams == 0, timeout=1.0, what="the RPC cancelled")

    async def test_watchdog_retries_against_a_wedged_server_do_not_pile_up_streams(self) -> None:
        engine = self.start_engine(FaultPlan(hang=True), backoff=Backoff.from_ms(50, 100, 2))
        self.patch(stt_stream, "RESPONSE_WATCHDOG_S", 0.3)
        stream, listener = self.open(engine, "CA-wedged")
        stream.speech_started()
        stream.feed(buzz(1, 400))
        stream.flush()
        await until(lambda: stream.streams_opened == 2, what="the watchdog's retry")
        # The retired stream ended: only the new one is in progress.
        await until(lambda: self.clients.speech_loop.active == 1, timeout=1.0, what="the retired stream's end")
        self.assertEqual(sum(self.clients.speech_loads), 1)

    async def test_out_of_range_before_any_response_backs_off_instead_of_looping(self) -> None:
        # e.g. "audio streamed too fast": refused at once, every time.
        engine = self.start_engine(FaultPlan(status="OUT_OF_RANGE", every_nth=1, after_responses=0),
                                   backoff=Backoff.from_ms(50, 100, 2))
        stream, listener = self.open(engine, "CA-oor")
        stream.feed(buzz(1, 200))
        await until(lambda: listener.of("failure"), what="the give-up")
        await until(lambda: stream._waiting is None, what="the cool-down's end")  # no stray retry ran
        self.assertEqual(stream.streams_opened, 3)  # one, then two retries: no hot loop
        self.assertEqual(len(self.logs.starting("STT_RETRY")), 2)

    async def test_the_stream_limit_in_silence_is_a_rollover_not_a_failure(self) -> None:
        # A 2 s limit and silence only: no responses ever, yet each stream ran to the limit.
        self.patch(google_stt, "HEALTHY_STREAM_S", 1.0)
        self.patch(stt_stream, "HEALTHY_STREAM_S", 1.0)
        engine = self.start_engine(FaultPlan(max_stream_s=2), backoff=Backoff.from_ms(50, 100, 2))
        stream, listener = self.open(engine, "CA-limit")
        await feed_paced(stream, b"\xff" * 8000 * 7, speed=4)
        await until(lambda: stream.streams_opened >= 3, what="streams replaced at the limit")
        self.assertEqual(listener.of("failure"), [])
        self.assertEqual(self.logs.starting("STT_RETRY"), [])
        self.assertTrue(self.logs.starting("STT_REOPEN"))
        # The limit is below the rollover age: later streams roll over before it.
        self.assertLess(engine.rollover_s, 2.0)
        self.assertTrue(self.logs.starting("STT_ROLLOVER_ADAPTED"))

    async def test_an_audio_timeout_is_a_reopen_not_the_stream_limit(self) -> None:
        # Google's audio timeout says "Long duration elapsed without audio": not its duration limit.
        engine = self.start_engine(FaultPlan(audio_timeout_s=0.5), backoff=Backoff.from_ms(50, 100, 2))
        stream, listener = self.open(engine, "CA-quiet")
        await feed_paced(stream, b"\xff" * 8000 * 20, speed=40)  # 20 s of audio, then nothing
        await until(lambda: self.logs.starting("STT_REOPEN"), what="the audio timeout")
        self.assertIn("without audio", self.logs.starting("STT_REOPEN")[0])
        self.assertEqual(engine.rollover_s, 240.0)
        self.assertEqual(self.logs.starting("STT_ROLLOVER_ADAPTED"), [])

    async def test_a_replay_longer_than_the_rollover_age_does_not_roll_over_at_once(self) -> None:
        # A caller talking for 12 s without a result, and a 5 s rollover: the stream that
        # replays those 12 s is past the age from its first byte, yet carries on.
        self.patch(google_stt, "HEALTHY_STREAM_S", 1.0)
        self.patch(stt_stream, "HEALTHY_STREAM_S", 1.0)
        engine = self.start_engine(rollover_s=5)
        stream, listener = self.open(engine, "CA-long")
        stream.speech_started()
        stream.feed(b"\xff" * 8000 * 12)  # no partial ever (silence to the emulator), speech to the VAD
        stream.flush()
        await feed_paced(stream, silence_ulaw(3000), speed=2)
        self.assertLessEqual(len(self.logs.starting("STT_ROLLOVER")), 3)

    async def test_a_hung_server_is_noticed_after_the_callers_turn(self) -> None:
        # The server swallows audio and never answers (as a SIGSTOPped process would).
        engine = self.start_engine(FaultPlan(latency_ms=60_000), backoff=Backoff.from_ms(50, 100, 1))
        self.patch(stt_stream, "RESPONSE_WATCHDOG_S", 0.5)
        stream, listener = self.open(engine, "CA-hung")
        stream.feed(b"\xff" * 800)
        stream.speech_started()
        stream.feed(buzz(1, 400))
        stream.flush()
        await until(lambda: self.logs.starting("STT_RETRY"), what="the watchdog's retry")
        self.assertIn("error=ResponseTimeout", self.logs.starting("STT_RETRY")[0])


class LongCallTests(GoogleEmulatorCase):
    timeout = 60

    async def last_word(self, stream, listener: Recorder, n: int, speed: float) -> None:
        """Say utterance ``n`` and wait for its final, then for every earlier stream to end: a
        late or repeated final of anything said before would have come first (a stream answers
        its audio in order), and a stream that has ended delivers nothing more."""
        await feed_paced(stream, utterance(n), speed=speed)
        await until(lambda: f"utterance {n}" in listener.of("final"), what=f"final {n}")
        await until(lambda: self.clients.speech_loop.active <= 1, what="the earlier streams' end")

    async def test_ten_minutes_across_rollovers_lose_and_repeat_nothing(self) -> None:
        # 300 utterances under a 20 s stream limit, rolling over at 15 s: about 40 streams.
        engine = self.start_engine(FaultPlan(max_stream_s=20), rollover_s=15)
        stream, listener = self.open(engine)
        for n in range(1, 301):
            # Fast, but never more than two utterances ahead of the finals, however slow the machine.
            await until(lambda: len(listener.of("final")) >= n - 2, what=f"final {n - 2}")
            await feed_paced(stream, utterance(n), speed=150)
        await until(lambda: len(listener.of("final")) >= 300, what="300 finals")
        await self.last_word(stream, listener, 301, speed=150)
        self.assertEqual(listener.of("final"), [f"utterance {n}" for n in range(1, 302)])
        self.assertGreaterEqual(stream.streams_opened, 38)
        self.assertEqual(self.emulator.stats.streams_failed, 0)  # rolled over before the limit every time

    async def test_long_silence_rolls_over_without_hitting_the_limit(self) -> None:
        # Nothing said for 2 minutes: no final to roll over at, and no result at all.
        engine = self.start_engine(FaultPlan(max_stream_s=20), rollover_s=15)
        stream, listener = self.open(engine)
        await feed_paced(stream, silence_ulaw(120_000), speed=150)
        await feed_paced(stream, utterance(1), speed=5)
        await until(lambda: listener.of("final"), what="the final")
        self.assertEqual(listener.of("final"), ["utterance 1"])
        self.assertGreaterEqual(stream.streams_opened, 8)
        self.assertEqual(self.emulator.stats.streams_failed, 0)
        self.assertEqual(self.logs.starting("STT_RETRY"), [])

    async def test_stream_limit_mid_utterance_reopens_with_replay(self) -> None:
        # No rollover: the 20 s limit cuts streams wherever they are, often mid-utterance
        # (rollover adaptation off: this is the path of a limit met mid-word).
        engine = self.start_engine(FaultPlan(max_stream_s=20))
        self.patch(engine, "stream_limit_seen", lambda age_s: None)
        stream, listener = self.open(engine)
        for n in range(1, 101):
            await until(lambda: len(listener.of("final")) >= n - 2, what=f"final {n - 2}")
            await feed_paced(stream, utterance(n, 1000, 700), speed=100)
        await feed_paced(stream, silence_ulaw(1000), speed=100)  # a call's audio goes on: no batch waits
        await until(lambda: len(listener.of("final")) >= 100, timeout=30,
                    what=lambda: f"100 finals (have {len(listener.of('final'))})")  # a loaded CI
        await self.last_word(stream, listener, 101, speed=100)
        self.assertEqual(listener.of("final"), [f"utterance {n}" for n in range(1, 102)])
        self.assertGreaterEqual(self.emulator.stats.streams_failed, 8)
        self.assertEqual(len(self.logs.starting("STT_REOPEN")), self.emulator.stats.streams_failed)
        self.assertEqual(self.logs.starting("STT_RETRY"), [])
        self.assertEqual(listener.of("failure"), [])


class ConstructionTests(GoogleEmulatorCase):
    async def test_streams_borrow_and_construct_nothing(self) -> None:
        engine = self.start_engine()
        before = construction_counts()
        streams = [self.open(engine, f"CA{i}") for i in range(12)]
        audio = utterance(1, 600, 500)
        for stream, _ in streams:
            stream.feed(audio)
        await until(lambda: all(listener.of("final") for _, listener in streams), what="every call's final")
        self.assertEqual(max(self.clients.speech_loads) - min(self.clients.speech_loads), 0)  # 12 over 4 channels
        for stream, _ in streams:
            stream.close()
        self.assertEqual(construction_counts(), before)
        await until(lambda: sum(self.clients.speech_loads) == 0, what="every lease back")


class PureTests(SynchronousTestCase):
    def test_recognition_config_for_twilio_audio(self) -> None:
        config = recognition_config(Settings(language="en-GB", stt_model="telephony"))
        self.assertTrue(config.interim_results)
        self.assertEqual(config.config.encoding.name, "MULAW")
        self.assertEqual(config.config.sample_rate_hertz, 8000)
        self.assertEqual((config.config.language_code, config.config.model), ("en-GB", "telephony"))
        self.assertTrue(config.config.use_enhanced and config.config.enable_automatic_punctuation)

    def test_audio_log_addresses_by_absolute_offset(self) -> None:
        log = AudioLog()
        log.append(bytes(range(256)) * 100)
        log.forget_before(10)  # below the slack: kept
        self.assertEqual(log.start, 0)
        log.forget_before(SAMPLE_RATE + 5)
        self.assertEqual(log.start, SAMPLE_RATE + 5)
        self.assertEqual(log.since(SAMPLE_RATE + 6)[:3], bytes([(SAMPLE_RATE + 6 + i) % 256 for i in range(3)]))
        self.assertEqual(log.since(0)[:1], bytes([(SAMPLE_RATE + 5) % 256]))  # forgotten audio is gone
        self.assertEqual(log.end, 25600)
        self.assertEqual(len(log.since(log.start)), 25600 - log.start)
