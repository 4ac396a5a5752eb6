"""The turn machine on a Clock: no sockets, no engines, no real time."""

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.turn import (
    SILENT, VOICED, VOICED_PCM, FakeConversation, FakeSTT, FakeTTS, RecordingMetrics, RecordingTransport,
)
from voiced.agent.base import CallInfo, Said
from voiced.audio import MULAW_8K
from voiced.stt.base import PCM_16K
from voiced.turns.eou import EndOfUtterance
from voiced.call.turn import Call, State, TurnSettings
from voiced.tts.speaker import PhraseCache, Speaker


class TurnMachineTests(SynchronousTestCase):
    def make_call(self, streaming=False, stt_audio=MULAW_8K, false_interruption_ms=1500):
        self.clock = Clock()
        self.clock.advance(1000)
        self.transport = RecordingTransport()
        self.stt = FakeSTT(streaming)
        self.tts = FakeTTS()
        self.conversation = FakeConversation()
        self.metrics = RecordingMetrics()
        eou = EndOfUtterance(self.clock, lambda pcm: pcm == VOICED_PCM, eou_silence_ms=240, min_speech_ms=60)
        self.call = Call(
            CallInfo("CA1", "MZ1"), self.clock, self.transport, self.stt,
            Speaker(self.tts, None, PhraseCache()), self.conversation, eou, self.metrics,
            TurnSettings(barge_in_ms=160, final_timeout_ms=1500, fallback_timeout_ms=4000, interim_phrase="Oops.",
                         false_interruption_ms=false_interruption_ms),
            stt_audio=stt_audio,
        )
        self.call.start()
        return self.call

    def frames(self, pattern, stt_audio=None):
        for ch in pattern:
            self.clock.advance(0.02)
            self.call.on_media(VOICED if ch == "v" else SILENT, stt_audio)

    def echo_all_marks(self):
        for name in self.transport.marks():
            self.call.on_mark(name)

    def finish_greeting(self):
        self.echo_all_marks()
        self.transport.sent.clear()
        self.assertEqual(self.call.state, State.LISTENING)

    def test_greeting_is_sent_with_marks(self):
        self.make_call()
        self.assertEqual(self.transport.marks(), ["g1.start", "g1.s0", "g1.end"])
        self.assertEqual(self.transport.sent[1][0], "media")
        self.assertEqual(self.call.state, State.GREETING)
        self.finish_greeting()

    def test_turn_with_utterance_engine(self):
        self.make_call(streaming=False)
        self.finish_greeting()
        self.frames("v" * 25)
        speech_end = self.clock.seconds()
        self.frames("." * 12)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        self.assertEqual((self.stt.stream.speech_starts, self.stt.stream.flushes), (1, 1))
        self.clock.advance(0.3)
        self.call.on_transcript("what time do you open", True)
        self.assertEqual(self.conversation.asked, ["what time do you open"])
        self.assertEqual(self.call.state, State.SPEAKING)
        self.assertEqual(self.transport.marks(), ["r2.start", "r2.s0", "r2.s1", "r2.end"])
        self.clock.advance(0.1)
        self.call.on_mark("r2.start")
        turn, values = self.metrics.turns[0]
        self.assertEqual(turn, 1)
        self.assertIsNone(values["STT_FIRST_PARTIAL_MS"])  # no partials from this engine: "-"
        expected_final = round((self.clock.seconds() - 0.1 - speech_end) * 1000)
        self.assertEqual(values["STT_FINAL_MS"], expected_final)
        self.assertEqual(values["TOTAL_LATENCY_MS"], expected_final)
        self.assertEqual(values["TTS_READY_MS"], 0)
        self.assertEqual(values["PLAYBACK_START_MS"], expected_final + 100)
        for name in ["r2.s0", "r2.s1", "r2.end"]:
            self.call.on_mark(name)
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.call.history[-1], Said("bot", "First answer. Second answer."))
        self.assertEqual(self.conversation.requests[0].history, (Said("bot", "Hello there."),))
        # The record says which TTS engine spoke the turn's reply (issue 22).
        self.assertEqual(self.call.record.turn(1).tts_engines, [self.tts.name])

    def test_turn_line_format(self):
        from voiced.metrics import TurnTimes, turn_line

        line = turn_line("CA1", 3, TurnTimes(speech_start=1.0, speech_end=2.0, final=2.5, reply_text=2.5,
                                             tts_ready=2.6, first_audio_sent=2.6, playback_start=2.7))
        self.assertEqual(line, "TURN call=CA1 turn=3 STT_FIRST_PARTIAL_MS=- STT_FINAL_MS=500 AGENT_FIRST_SENTENCE_MS=- TTS_READY_MS=100 "
                               "TOTAL_LATENCY_MS=600 PLAYBACK_START_MS=700")

    def test_barge_in_clears_within_threshold(self):
        self.make_call()
        self.finish_greeting()
        self.frames("v" * 20 + "." * 12)
        self.call.on_transcript("tell me everything", True)
        self.call.on_mark("r2.start")
        self.call.on_mark("r2.s0")  # the caller heard the first sentence
        self.transport.sent.clear()
        onset = self.clock.seconds()
        for _ in range(20):
            self.frames("v")
            if ("clear",) in self.transport.sent:
                break
        self.assertIn(("clear",), self.transport.sent)
        self.assertLessEqual(self.clock.seconds() - onset, 0.160 + 1e-9)
        self.assertEqual(self.call.state, State.LISTENING)
        # The new turn's words began when the caller did, not when the barge-in was decided:
        # an utterance engine's capture must reach back that far.
        self.assertEqual(self.stt.stream.started_ms_ago[-1], round((self.clock.seconds() - onset) * 1000))
        # The second sentence had played for less than its first word: only the first was heard.
        self.assertEqual(self.call.history[-1], Said("bot", "First answer.", interrupted=True))
        # Twilio echoes the discarded marks after a clear: they change nothing.
        self.call.on_mark("r2.s1")
        self.call.on_mark("r2.end")
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.metrics.barge_ins_total._value.get(), 1)

    def test_short_noise_does_not_barge_in(self):
        self.make_call()
        self.frames("vvvvv" + "." * 15)  # 100 ms of voice during the greeting
        self.assertNotIn(("clear",), self.transport.sent)
        self.assertEqual(self.call.state, State.GREETING)

    def test_streaming_partials_and_early_final(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 5)
        self.call.on_transcript("what", False)
        self.frames("v" * 20 + "." * 6)
        self.call.on_transcript("what time is it", True)  # engine endpointing while the caller is silent
        self.assertEqual(self.call.state, State.SPEAKING)
        self.call.on_mark("r2.start")
        values = self.metrics.turns[0][1]
        self.assertEqual(values["STT_FIRST_PARTIAL_MS"], 100)
        self.assertEqual(values["STT_FINAL_MS"], 120)

    def test_the_stt_hears_of_a_pause_after_80_ms_not_of_the_gaps_between_words(self):
        self.make_call(streaming=True)
        hints = self.stt.stream.pause_hints
        self.finish_greeting()
        self.frames("v" * 10 + "..." + "v" * 10)  # a 60 ms gap between words
        self.assertEqual(hints, [])
        self.frames("....")  # 80 ms of quiet: the turn may be ending
        self.assertEqual(hints, [True])
        self.frames("v" * 4)
        self.assertEqual(hints, [True, False])

    def test_a_final_in_a_gap_between_words_does_not_cut_the_caller_off(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 15 + ".")
        self.call.on_transcript("I would like", True)
        self.assertEqual(self.call.state, State.LISTENING)
        self.frames("v" * 15 + "." * 12)
        self.call.on_transcript("to book a visit", True)
        self.assertEqual(self.conversation.asked, ["I would like to book a visit"])

    def test_backchannel_final_is_dropped_but_not_the_next_turns(self):
        self.make_call(streaming=True)
        self.frames("vvvv")  # "uh-huh" over the greeting: too short to barge in
        self.call.on_transcript("uh huh", False)
        self.frames("." * 12)
        self.finish_greeting()  # the engine never finalized the backchannel
        self.frames("v" * 15 + "." * 12)
        self.call.on_transcript("what time do you open", True)
        self.assertEqual(self.conversation.asked, ["what time do you open"])

    def test_stream_switching_to_whole_utterances_mid_call_is_followed(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.stt.stream.streaming = False  # e.g. Google refused the config: Whisper per utterance
        self.frames("v" * 10 + "." * 12)
        self.clock.advance(5.0)  # a streaming final timeout would have given up by now
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        self.call.on_transcript("goodbye", True)
        self.assertEqual(self.conversation.asked, ["goodbye"])

    def test_agent_failure_before_audio_returns_to_listening(self):
        self.make_call()
        self.finish_greeting()

        def broken(request, sink):
            raise RuntimeError("agent down")

        self.conversation.respond = broken
        self.frames("v" * 10 + "." * 12)
        self.call.on_transcript("hello", True)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.transport.marks(), ["r2.start", "r2.s0", "r2.end"])  # the apology
        self.echo_all_marks()
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.metrics.agent_failures_total._value.get(), 1)
        self.assertEqual(self.call.history[-1], Said("caller", "hello"))  # an apology is not conversation

    def test_agent_failure_after_first_sentence_plays_it_out(self):
        self.make_call()
        self.finish_greeting()
        failing = Deferred()

        def partial(request, sink):
            sink.text("Let me see. We are open from")
            return failing

        self.conversation.respond = partial
        self.frames("v" * 10 + "." * 12)
        self.call.on_transcript("hello", True)
        failing.errback(RuntimeError("stream broke"))
        # The sentence the agent finished plays, its unfinished one does not, the apology follows.
        self.assertEqual(self.transport.marks(), ["r2.start", "r2.s0", "r2.s1", "r2.end"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.echo_all_marks()
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.call.history[-1], Said("bot", "Let me see."))

    def test_final_timeout_answers_the_partial(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 10)
        self.call.on_transcript("opening hours", False)
        self.frames("." * 12)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        self.clock.advance(1.5)
        self.assertEqual(self.conversation.asked, ["opening hours"])
        self.call.on_mark("r2.start")
        self.assertEqual(self.metrics.turns[0][1]["STT_FINAL_MS"], 240 + 1500)  # EOU wait + final timeout

    def test_an_utterance_with_an_empty_transcript_is_asked_again_never_silence(self):
        """Issue 18: an empty final (a degraded STT, a language the engine cannot hear) gets
        the ask-again phrase, counts as a turn, and the silence after it is idle."""
        self.make_call(streaming=False)
        self.finish_greeting()
        self.frames("v" * 15 + "." * 12)
        self.call.on_transcript("", True)
        self.assertEqual(self.call.state, State.LISTENING)  # the caller may talk over the phrase
        self.assertEqual(self.conversation.asked, [])  # nobody heard words: the agent is not asked
        self.assertEqual(self.tts.spoken[-1], TurnSettings().ask_again_phrase)
        (record,) = self.call.record.turns
        self.assertEqual((record.number, record.caller_text, record.event, record.reply_text),
                         (1, "", {"unheard": "empty transcript"}, TurnSettings().ask_again_phrase))
        self.echo_all_marks()
        self.clock.advance(8.0)  # idle_reprompt_ms after the phrase played
        self.assertEqual([r.event.count for r in self.conversation.requests], [1])

    def test_a_click_with_no_transcript_is_not_answered_but_idle_still_runs(self):
        self.make_call(streaming=False)
        self.finish_greeting()
        self.frames("v" * 5 + "." * 12)  # 100 ms: a noise, not words
        self.call.on_transcript("", True)
        self.assertEqual(self.transport.sent, [])
        self.assertEqual(self.call.record.turns, [])
        self.clock.advance(8.0)
        self.assertEqual([r.event.count for r in self.conversation.requests], [1])

    def test_a_caller_who_keeps_speaking_unheard_is_not_told_they_were_silent(self):
        # Speech over the idle reprompt that nothing transcribes would resume it (a false
        # interruption); here the caller is asked to say it again each time.
        self.make_call(streaming=False, false_interruption_ms=0)
        self.finish_greeting()
        for _ in range(4):
            self.frames("v" * 15 + "." * 12)
            self.call.on_transcript("", True)
            self.echo_all_marks()
            self.clock.advance(8.0)  # the idle reprompt after each
        self.assertEqual([r.event.count for r in self.conversation.requests], [1, 1, 1, 1])
        self.assertNotIn(TurnSettings().idle_goodbye_phrase, self.tts.spoken)

    def test_a_give_up_mid_utterance_with_nothing_to_transcribe_answers_when_the_caller_stops(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 15)
        self.call.on_stt_failure("UNAVAILABLE after 4 attempts")  # over the caller's words: no phrase yet
        self.frames("v" * 5 + "." * 12)
        self.clock.advance(0)
        self.assertEqual(self.tts.spoken[-1], "Oops.")  # at once, not after the fallback bound

    def test_a_give_up_with_nothing_to_transcribe_ends_the_turn_at_once(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 15 + "." * 12)
        self.call.on_stt_failure("UNAVAILABLE after 4 attempts", answer_coming=False)
        self.assertEqual(self.call.state, State.LISTENING)  # the repeat it asked for is a new turn
        self.assertEqual(self.tts.spoken[-1], "Oops.")
        self.clock.advance(10)
        self.assertEqual(self.tts.spoken.count("Oops."), 1)  # said once, not again at a timeout

    def test_every_utterance_of_a_call_whose_stt_cannot_transcribe_is_answered(self):
        """Google refused the stream and there is no fallback: the first utterance hears the
        interim phrase, each later one (an empty final each) the ask-again phrase."""
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 15 + "." * 12)
        self.stt.stream.streaming = False  # degraded: whole utterances, one (empty) final each
        self.call.on_stt_failure("INVALID_ARGUMENT: model not supported for he-IL")
        self.call.on_transcript("", True)
        for _ in range(2):
            self.echo_all_marks()
            self.frames("v" * 15 + "." * 12)
            self.call.on_transcript("", True)
        self.assertEqual(self.tts.spoken[1:], ["Oops.", TurnSettings().ask_again_phrase,
                                               TurnSettings().ask_again_phrase])
        self.assertEqual([t.event["unheard"] for t in self.call.record.turns],
                         ["stt gave up", "empty transcript", "empty transcript"])
        self.assertEqual([t.reply_text for t in self.call.record.turns][0], "Oops.")

    def test_stt_failure_plays_interim_phrase_then_fallback_text_is_answered(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 10 + "." * 12)
        self.call.on_stt_failure("UNAVAILABLE after 4 attempts", answer_coming=True)
        self.assertEqual(self.transport.marks()[0], "p2.start")
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        self.clock.advance(2.0)  # beyond the normal final timeout, within the fallback bound
        self.call.on_fallback_transcript("what time do you open")
        self.assertEqual(self.conversation.asked, ["what time do you open"])

    def test_the_interim_phrase_asks_for_a_repeat_only_when_no_answer_is_coming(self):
        for answer_coming, phrase in ((True, "Hold on."), (False, "Oops.")):
            self.make_call(streaming=True)
            self.call.settings = TurnSettings(interim_phrase="Oops.", interim_wait_phrase="Hold on.")
            self.finish_greeting()
            self.frames("v" * 10 + "." * 12)
            self.call.on_stt_failure("UNAVAILABLE after 4 attempts", answer_coming=answer_coming)
            self.assertEqual(self.tts.spoken[-1], phrase)

    def test_a_give_up_while_the_caller_speaks_whose_fallback_gives_nothing_still_gets_the_phrase(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 10)
        self.call.on_stt_failure("UNAVAILABLE after 4 attempts", answer_coming=True)  # mid-speech: no phrase yet
        self.assertEqual(self.transport.marks(), [])
        self.frames("." * 12)
        self.clock.advance(4.0)  # the fallback bound passes with nothing
        self.assertEqual(self.tts.spoken[-1], "Oops.")  # the ask-again phrase, not silence
        self.assertEqual(self.call.state, State.LISTENING)

    def test_a_fallback_transcript_after_its_turn_was_answered_is_not_the_next_turns(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 10)
        self.call.on_transcript("what time", False)
        self.frames("." * 12)
        self.call.on_stt_failure("UNAVAILABLE after 4 attempts")
        self.clock.advance(4.0)  # the fallback bound: the partial is answered
        self.assertEqual(self.conversation.asked, ["what time"])
        self.echo_all_marks()
        self.frames("v" * 10)  # the caller's next question begins
        self.call.on_fallback_transcript("what time do you open")  # the fallback, late
        self.frames("." * 12)
        self.call.on_transcript("where are you", True)
        self.assertEqual(self.conversation.asked, ["what time", "where are you"])

    def test_goodbye_hangs_up_after_it_played(self):
        self.make_call()
        self.finish_greeting()
        self.frames("v" * 10 + "." * 12)
        self.call.on_transcript("ok bye", True)
        self.assertNotIn(("hangup",), self.transport.sent)
        self.echo_all_marks()
        self.assertEqual(self.transport.sent[-1], ("hangup",))
        self.assertEqual(self.call.state, State.HANGING_UP)

    def test_caller_resumes_while_thinking(self):
        self.make_call()
        self.finish_greeting()
        self.tts.pending = []
        self.frames("v" * 10 + "." * 12)
        self.call.on_transcript("I would like", True)
        self.assertEqual(self.call.state, State.THINKING)
        self.frames("v" * 9)
        self.assertEqual(self.call.state, State.LISTENING)
        self.frames("." * 12)
        self.call.on_transcript("to book a visit", True)
        self.assertEqual(self.conversation.asked, ["I would like", "I would like to book a visit"])

    def test_close_releases_the_stream_and_ignores_late_input(self):
        self.make_call()
        self.call.close("test")
        self.assertTrue(self.stt.stream.closed)
        fed = self.stt.stream.fed
        self.frames("vvvv")
        self.call.on_transcript("late", True)
        self.assertEqual(self.stt.stream.fed, fed)
        self.assertEqual(self.call.state, State.ENDED)

    def test_utterance_engine_final_may_come_late_under_load(self):
        self.make_call(streaming=False)
        self.finish_greeting()
        self.frames("v" * 10 + "." * 12)
        self.clock.advance(6.0)  # a long Whisper queue: far beyond the streaming final timeout
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        self.call.on_transcript("goodbye", True)
        self.assertEqual(self.conversation.asked, ["goodbye"])

    def test_final_delivered_inside_flush_answers_once(self):
        self.make_call(streaming=False)
        self.finish_greeting()
        self.stt.stream.flush = lambda: self.call.on_transcript("what time do you open", True)
        self.frames("v" * 10 + "." * 12)
        self.assertEqual(self.conversation.asked, ["what time do you open"])
        self.assertEqual(self.call.state, State.SPEAKING)

    def test_a_late_final_after_giving_up_is_still_answered(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 15 + "." * 12)
        self.clock.advance(1.5)  # no transcript in time (the stream was being re-created)
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.tts.spoken[-1], TurnSettings().ask_again_phrase)  # not silence meanwhile
        self.clock.advance(0.7)
        self.call.on_transcript("goodbye", True)
        self.assertEqual(self.conversation.asked, ["goodbye"])
        self.call.on_mark("r3.start")
        self.assertEqual(self.metrics.turns[0][1]["STT_FINAL_MS"], 240 + 1500 + 700)  # from its speech end

    def test_a_late_final_after_the_caller_moved_on_is_not_answered_alone(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 10 + "." * 12)
        self.clock.advance(1.5)
        self.frames("v" * 10)  # the caller speaks again
        self.call.on_transcript("stale", True)
        self.assertEqual(self.conversation.asked, [])

    def test_a_final_arriving_while_the_bot_speaks_is_not_carried_into_the_next_turn(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 10)
        self.call.on_transcript("opening hours", False)
        self.frames("." * 12)
        self.clock.advance(1.5)  # answered from the partial
        self.assertEqual(self.call.state, State.SPEAKING)
        self.call.on_transcript("opening hours please", True)  # the late final of that same utterance
        self.echo_all_marks()
        self.frames("v" * 10 + "." * 12)
        self.call.on_transcript("goodbye", True)
        self.assertEqual(self.conversation.asked, ["opening hours", "goodbye"])

    def test_barge_in_with_gaps_between_words_is_still_on_time(self):
        self.make_call()
        self.frames("vvvv.vvv.")  # 180 ms of speech, 140 ms of it voiced (gaps between syllables)
        self.assertIn(("clear",), self.transport.sent)

    def test_a_carrier_that_never_echoes_marks_still_gets_its_hang_up(self):
        self.make_call()
        self.clock.advance(20)  # the greeting's end mark never comes back
        self.assertEqual(self.call.state, State.LISTENING)
        self.frames("v" * 10 + "." * 12)
        self.call.on_transcript("ok bye", True)
        self.assertNotIn(("hangup",), self.transport.sent)
        reply_audio = self.transport.sent[self.transport.sent.index(("mark", "r2.start")):]
        played_s = sum(item[1] for item in reply_audio if item[0] == "media") / 8000
        self.clock.advance(played_s + 2.9)
        self.assertNotIn(("hangup",), self.transport.sent)
        self.clock.advance(0.2)
        self.assertEqual(self.transport.sent[-1], ("hangup",))
        self.assertEqual(len(self.metrics.turns), 1)  # reported, with playback start unknown ("-")
        self.assertIsNone(self.metrics.turns[0][1]["PLAYBACK_START_MS"])

    def test_a_sender_that_stops_mid_utterance_still_ends_the_turn(self):
        self.make_call()
        self.finish_greeting()
        self.frames("v" * 15)  # then nothing at all: no silence frames
        self.clock.advance(0.5)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        self.call.on_transcript("what time do you open", True)
        self.assertEqual(self.conversation.asked, ["what time do you open"])
        self.call.close("test")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_continuous_audio_never_gets_synthetic_silence(self):
        self.make_call()
        self.finish_greeting()
        self.frames("v" * 200)  # 4 s of steady speech, frames every 20 ms
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.stt.stream.fed, 200)  # only the real frames reached STT

    def test_a_wideband_call_feeds_stt_its_16k_audio_while_the_turn_machine_hears_8k(self):
        self.make_call(stt_audio=PCM_16K)
        self.assertEqual(self.stt.stream.audio, PCM_16K)  # the stream was opened for 16 kHz PCM
        self.finish_greeting()
        wide = b"\x10\x00" * 320  # 20 ms at 16 kHz
        self.frames("v" * 15 + "." * 12, stt_audio=wide)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)  # VAD and EOU ran on the 8 kHz mu-law
        self.assertEqual(set(self.stt.stream.fed_audio), {wide})
        self.call.on_transcript("what time do you open", True)
        self.assertEqual(self.conversation.asked, ["what time do you open"])

    def test_a_wideband_calls_gap_reaches_stt_as_16k_silence(self):
        self.make_call(stt_audio=PCM_16K)
        self.finish_greeting()
        self.frames("v" * 15, stt_audio=b"\x10\x00" * 320)  # then the sender stalls
        self.clock.advance(0.5)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        gap = self.stt.stream.fed_audio[-1]
        self.assertEqual((set(gap), len(gap) % 640), ({0}, 0))  # PCM silence, whole 20 ms frames

    def test_stt_giving_up_after_the_final_timeout_still_plays_the_interim_phrase(self):
        # Google's retries (~3 s) outlast the final timeout (1.5 s): the turn was already
        # given up when STT reports the failure, but the caller is still waiting on it.
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 15 + "." * 12)
        self.clock.advance(1.5)  # no partial, no final: the utterance is abandoned, the caller asked again
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.transport.marks()[:2], ["p2.start", "p2.s0"])
        self.clock.advance(1.3)
        self.call.on_stt_failure("Google STT failed after 4 retries", answer_coming=True)
        self.call.on_stt_failure("Google STT failed after 4 retries")  # the same utterance: one phrase in all
        self.assertEqual([m for m in self.transport.marks() if m.endswith(".start")], ["p2.start"])
        self.clock.advance(0.5)
        self.call.on_fallback_transcript("what time do you open")
        self.assertEqual(self.conversation.asked, ["what time do you open"])
        # One utterance, one turn: the unheard record became the answered one.
        self.assertEqual([(t.number, t.caller_text) for t in self.call.record.turns], [(1, "what time do you open")])

    def test_a_turn_ended_by_the_engines_final_flushes_the_stream(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 20 + "." * 6)
        self.call.on_transcript("what time is it", True)
        self.assertEqual(self.conversation.asked, ["what time is it"])
        self.assertEqual(self.stt.stream.flushes, 1)  # the engine knows the utterance is over

    def test_the_caller_can_interrupt_the_interim_phrase(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 10 + "." * 12)
        self.call.on_stt_failure("UNAVAILABLE after 4 attempts")
        self.assertIn("p2.start", self.transport.marks())
        self.transport.sent.clear()
        self.frames("v" * 10)  # "no, listen": the caller talks over the phrase
        self.assertEqual(self.transport.sent.count(("clear",)), 1)
        self.assertEqual(self.metrics.barge_ins_total._value.get(), 1)
        self.frames("v" * 10)
        self.assertEqual(self.transport.sent.count(("clear",)), 1)  # once, not per frame
        self.call.on_mark("p2.end")  # echoed after the clear: changes nothing
        self.frames("." * 12)
        self.call.on_transcript("what time do you open", True)
        self.assertEqual(self.conversation.asked, ["what time do you open"])

    def test_a_sentence_without_audio_gets_no_mark(self):
        self.make_call()
        self.finish_greeting()
        self.tts.synthesize = lambda text: succeed(b"" if text == "First answer." else b"\x00" * 1600)
        self.frames("v" * 10 + "." * 12)
        self.call.on_transcript("hello", True)
        self.assertEqual(self.transport.marks(), ["r2.start", "r2.s1", "r2.end"])

    def test_no_interim_phrase_over_the_callers_words(self):
        self.make_call(streaming=True)
        self.finish_greeting()
        self.frames("v" * 10)
        self.call.on_stt_failure("Google STT failed after 4 retries")  # mid-utterance
        self.assertEqual(self.transport.sent, [])
        self.frames("v" * 5 + "." * 12)
        self.call.on_fallback_transcript("what time do you open")
        self.assertEqual(self.conversation.asked, ["what time do you open"])
