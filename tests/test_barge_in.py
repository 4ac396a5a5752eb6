"""Whether caller sound over the bot interrupts it: the policy (voiced.turns.barge_in), the
levels it compares (voiced.turns.levels), the call's judge of them (voiced.call.barge_in),
and a real ``Call`` on a line that plays the bot's audio in real time and hears its echo,
on a Clock (the harness: tests/turn_harness.py)."""

from __future__ import annotations

import math

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.turn_harness import (
    BOT_DB, CALLER_DB, ECHO_LOSS_DB, CallOnALine, NearTestCase, level_of, logged, tone, voice,
)
from voiced.audio import FRAME_MS
from voiced.call.turn import State
from voiced.turns.barge_in import Action, BargeInDecision, BargeInPolicy, BargeInSettings, SoundOverBot
from voiced.turns.eou import EndOfUtterance
from voiced.turns.levels import CallerLevel, OutgoingLevel, dbfs


# ---- the policy ----------------------------------------------------------------------------
def sound(**fields) -> SoundOverBot:
    fields.setdefault("sustained", True)
    fields.setdefault("level_db", -20.0)
    fields.setdefault("bot_level_db", -16.0)
    fields.setdefault("caller_level_db", -20.0)
    return SoundOverBot(**fields)


class BargeInPolicyTests(SynchronousTestCase):
    def setUp(self):
        self.policy = BargeInPolicy(BargeInSettings(echo_margin_db=15, background_margin_db=10))

    def test_sound_not_yet_sustained_is_not_decided(self):
        self.assertEqual(self.policy.decide(sound(sustained=False)).action, Action.WAIT)
        self.assertEqual(self.policy.decide(sound(sustained=False, level_db=-60)).action, Action.WAIT)

    def test_the_callers_own_voice_over_the_bot_interrupts(self):
        self.assertEqual(self.policy.decide(sound()), BargeInDecision(Action.INTERRUPT, "speech", "-20 dBFS, caller -20 dBFS"))

    def test_sound_echo_margin_under_the_bot_is_its_echo(self):
        self.assertEqual(self.policy.decide(sound(level_db=-36, caller_level_db=None)),
                         BargeInDecision(Action.IGNORE, "echo", "-36 dBFS, bot -16 dBFS"))
        self.assertEqual(self.policy.decide(sound(level_db=-31, caller_level_db=None)).reason, "echo")  # the margin
        self.assertEqual(self.policy.decide(sound(level_db=-30.9, caller_level_db=None)).action, Action.INTERRUPT)

    def test_nothing_playing_has_no_echo(self):
        self.assertEqual(self.policy.decide(sound(level_db=-45, bot_level_db=-math.inf, caller_level_db=None)).action,
                         Action.INTERRUPT)

    def test_sound_background_margin_under_the_callers_level_is_someone_else(self):
        self.assertEqual(self.policy.decide(sound(level_db=-27, bot_level_db=-30, caller_level_db=-12)),
                         BargeInDecision(Action.IGNORE, "background", "-27 dBFS, caller -12 dBFS"))
        self.assertEqual(self.policy.decide(sound(level_db=-21.9, bot_level_db=-30, caller_level_db=-12)).action,
                         Action.INTERRUPT)

    def test_a_louder_moment_of_background_talk_is_still_background(self):
        # The TV's last 100 ms peak near the caller's level; the whole sound stays 14 dB under it.
        self.assertEqual(self.policy.decide(sound(level_db=-30, sound_level_db=-40, bot_level_db=-50,
                                                  caller_level_db=-26)),
                         BargeInDecision(Action.IGNORE, "background", "-40 dBFS, caller -26 dBFS"))
        # The caller's own voice: loud now and over the whole sound.
        self.assertEqual(self.policy.decide(sound(level_db=-25, sound_level_db=-27, bot_level_db=-50,
                                                  caller_level_db=-26)).action, Action.INTERRUPT)

    def test_a_caller_not_heard_yet_has_no_background_to_compare(self):
        self.assertEqual(self.policy.decide(sound(level_db=-27, bot_level_db=-30, caller_level_db=None)).action,
                         Action.INTERRUPT)

    def test_echo_is_told_before_background(self):
        self.assertEqual(self.policy.decide(sound(level_db=-40, bot_level_db=-16, caller_level_db=-12)).reason,
                         "echo")

    def test_a_partial_of_only_backchannel_words_is_no_turn(self):
        self.assertEqual(self.policy.decide(sound(words="yeah")),
                         BargeInDecision(Action.IGNORE, "backchannel", "'yeah'"))
        self.assertEqual(self.policy.decide(sound(words="כן כן", language="he-IL")).reason, "backchannel")
        self.assertEqual(self.policy.decide(sound(words="yeah I need help")).action, Action.INTERRUPT)
        self.assertEqual(self.policy.decide(sound(words="wait")).action, Action.INTERRUPT)

    def test_levels_are_judged_before_words(self):
        self.assertEqual(self.policy.decide(sound(level_db=-40, words="stop")).reason, "echo")

    def test_zero_margins_turn_the_guards_off(self):
        policy = BargeInPolicy(BargeInSettings(echo_margin_db=0, background_margin_db=0))
        self.assertEqual(policy.decide(sound(level_db=-50, bot_level_db=-10, caller_level_db=-10)).action,
                         Action.INTERRUPT)


class LevelTests(NearTestCase):
    def test_dbfs(self):
        self.assertEqual(dbfs(32768), 0.0)
        self.assertAlmostEqual(dbfs(3277), -20.0, places=2)
        self.assertEqual(dbfs(0), -math.inf)

    def test_tones_have_the_level_asked(self):
        for db in (-10, -16, -20, -36):
            self.assertNear(level_of(tone(db, 200)), db, 0.2)

    def test_each_frame_is_placed_on_the_playout_timeline(self):
        level = OutgoingLevel(window_s=0.6)
        audio = tone(-40, 100) + tone(-10, 20) + tone(-40, 100)  # a loud frame 100 ms in
        level.queued(audio, plays_at=10.0)
        self.assertEqual(level.recent(9.99), 0.0)  # nothing has played yet
        self.assertNear(dbfs(level.recent(10.0)), -40, 0.2)
        self.assertNear(dbfs(level.recent(10.099)), -40, 0.2)
        self.assertNear(dbfs(level.recent(10.1)), -10, 0.2)

    def test_the_reference_is_the_loudest_frame_of_the_window_before_now(self):
        level = OutgoingLevel(window_s=0.6)
        level.queued(tone(-10, 200), plays_at=10.0)
        level.queued(tone(-30, 2000), plays_at=10.2)
        self.assertNear(dbfs(level.recent(10.7)), -10, 0.2)  # the loud frame at 10.18
        self.assertNear(dbfs(level.recent(10.79)), -30, 0.2)  # 0.6 s on, it is forgotten
        self.assertNear(dbfs(level.recent(12.7)), -30, 0.2)  # the last frame, at 12.18
        self.assertEqual(level.recent(12.79), 0.0)  # 0.6 s after the last frame: nothing playing

    def test_a_partial_frame_at_the_end_of_a_chunk_is_not_placed(self):
        level = OutgoingLevel()
        level.queued(tone(-30, 20) + tone(-5, 10), plays_at=0.0)
        self.assertNear(dbfs(level.recent(0.5)), -30, 0.2)

    def test_cleared_drops_what_had_not_played(self):
        level = OutgoingLevel(window_s=0.6)
        level.queued(tone(-30, 1000), plays_at=10.0)
        level.queued(tone(-10, 1000), plays_at=11.0)
        level.cleared(10.5)
        self.assertNear(dbfs(level.recent(10.5)), -30, 0.2)
        self.assertNear(dbfs(level.recent(11.0)), -30, 0.2)  # what played before the clear, within the window
        self.assertEqual(level.recent(11.2), 0.0)  # the louder audio never played
        level.queued(tone(-20, 100), plays_at=12.0)  # the next reply after the clear
        self.assertNear(dbfs(level.recent(12.05)), -20, 0.2)

    def test_caller_level_follows_their_utterances_slowly(self):
        caller = CallerLevel()
        self.assertIsNone(caller.db)
        caller.utterance(0.0)  # no level: nothing learnt
        self.assertIsNone(caller.db)
        caller.utterance(3277)
        self.assertAlmostEqual(caller.db, -20, places=2)
        caller.utterance(32768 * 10 ** (-30 / 20))
        self.assertAlmostEqual(caller.db, -23, places=2)  # 30 % of the way to the new utterance

    def test_queuing_forgets_what_played_before_the_window(self):
        # A bot talking for minutes with nobody over it: recent() is never asked.
        level = OutgoingLevel(window_s=0.6)
        for second in range(60):
            level.queued(tone(-20, 1000), plays_at=10.0 + second, now=10.0 + second)
        self.assertLessEqual(len(level), (1000 + 600) // FRAME_MS + 1)
        self.assertNear(dbfs(level.recent(69.5)), -20, 0.2)
        kept = len(level)
        level.queued(tone(-20, 1000), plays_at=80.0)  # without ``now``: nothing is forgotten yet
        self.assertEqual(len(level), kept + 1000 // FRAME_MS)

    def test_the_recent_level_is_the_last_few_frames_not_the_utterance(self):
        eou = EndOfUtterance(Clock(), lambda pcm: True, eou_silence_ms=240, min_speech_ms=60)
        self.assertEqual(eou.recent_level(), 0.0)  # not in speech
        for frame in [tone(-36, FRAME_MS)] * 250 + [voice(CALLER_DB)] * 10:
            eou.push(frame)
        self.assertLess(dbfs(eou.speech_level()), CALLER_DB - 10)  # 5 s of echo outweigh 0.2 s of voice
        self.assertNear(dbfs(eou.recent_level()), CALLER_DB, 1)  # the voice is what sounds now


# ---- through a call ---------------------------------------------------------------------------
LONG_REPLY = ("One two three four five.", "Six seven eight nine ten.", "Eleven twelve thirteen fourteen fifteen.")
ON_TIME_S = (160 + FRAME_MS) / 1000 + 1e-9  # barge_in_ms and the frame that completes it


class BargeInOverTheBotTests(CallOnALine):
    def bot_speaking(self, streaming=False, speakerphone=False, **kwargs) -> None:
        """The greeting played, the caller said something at their usual level (-20 dBFS),
        and the bot's 3 s answer (-16 dBFS) has just begun to play."""
        self.make_call(streaming=streaming, sentences=kwargs.pop("sentences", LONG_REPLY), **kwargs)
        self.play_out()
        self.caller_turn()
        self.assertEqual(self.call.state, State.SPEAKING)
        self.assertNear(self.call._barge_in.caller.db, CALLER_DB, 0.3)
        self.speakerphone = speakerphone

    def test_the_bots_own_echo_does_not_interrupt_it(self):
        ignored = logged(self, "BARGE_IN_IGNORED")
        self.bot_speaking(speakerphone=True)
        self.assertNear(level_of(self.transport.audio()[-1]), BOT_DB, 0.2)
        self.silence(140)  # 2.8 s of the 3 s reply: the caller's stream is its echo at -36 dBFS
        self.assertTrue(self.eou.in_speech)  # the VAD takes it for speech
        self.assertNear(dbfs(self.eou.speech_level()), BOT_DB - ECHO_LOSS_DB, 0.5)
        self.assertNotIn(("clear",), self.transport.sent)
        self.assertEqual(self.call.state, State.SPEAKING)
        self.assertEqual(self.barge_ins(), [("ignore", "echo")])  # once per sound, not per frame
        self.assertEqual(self.decisions("ignore", "echo"), 1)
        self.assertEqual(self.metrics.barge_ins_total._value.get(), 0)
        self.assertEqual([e["reason"] for e in ignored], ["echo"])
        self.assertEqual(self.conversation.asked, ["tell me everything"])
        at_s = self.call.record.barge_ins[0]["at_s"]
        # Decided once the echo had lasted barge_in_ms, not at the first frame of it.
        self.assertGreater(at_s, self.clock.seconds() - self.call.record.started_at - 140 * FRAME_MS / 1000)
        self.assertLessEqual(at_s, self.clock.seconds() - self.call.record.started_at)

    def test_the_caller_speaking_over_the_bot_interrupts_on_time(self):
        self.bot_speaking()
        self.silence(5)
        self.assertLessEqual(self.until_cleared(voice()), ON_TIME_S)
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])
        self.assertEqual(self.decisions("interrupt", "speech"), 1)
        self.assertEqual(self.metrics.barge_ins_total._value.get(), 1)

    def test_the_caller_speaking_over_the_bots_echo_interrupts_on_time(self):
        self.bot_speaking(speakerphone=True)
        self.silence(5)  # the reply is playing; its echo is only coming back
        self.assertLessEqual(self.until_cleared(voice()), ON_TIME_S)
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])

    def test_the_caller_interrupts_on_time_after_seconds_of_echo(self):
        # The level judged is the last few frames': 5 s of echo must not outweigh the voice.
        self.bot_speaking(speakerphone=True, sentences=LONG_REPLY * 2)
        self.silence(250)  # 5 s of the bot's echo, ignored
        self.assertEqual(self.barge_ins(), [("ignore", "echo")])
        self.assertLessEqual(self.until_cleared(voice()), ON_TIME_S)
        self.assertEqual(self.barge_ins(), [("ignore", "echo"), ("interrupt", "speech")])

    def test_a_barge_in_stops_the_echo_reference_too(self):
        self.bot_speaking()
        self.silence(5)
        self.until_cleared(voice())
        # What played before the clear ages out of the window; nothing after it was kept.
        self.assertEqual(self.call._barge_in.outgoing.recent(self.clock.seconds() + 0.61), 0.0)

    def test_the_bots_audio_long_played_is_forgotten_though_nobody_talked_over_it(self):
        self.make_call(sentences=["One two three four five six seven eight nine ten."])  # 2 s each
        self.play_out()
        for _ in range(20):
            self.caller_turn("tell me more")
            self.play_out()
        # 40 s of the bot played out: what is kept may not grow with the call (the last
        # reply, 100 frames, and the 0.6 s window before now are the most worth keeping).
        self.assertLessEqual(len(self.call._barge_in.outgoing), 100 + 0.6 * 1000 / FRAME_MS + 1)

    def test_quieter_speech_than_the_callers_is_background(self):
        # A loud caller (-12 dBFS) and a quiet bot (-20 dBFS): someone 15 dB under the
        # caller is far above the bot's echo, and still not the caller.
        ignored = logged(self, "BARGE_IN_IGNORED")
        self.make_call(bot_db=-20, sentences=LONG_REPLY)
        self.play_out()
        self.caller_turn(level_db=-12)
        self.speakerphone = True
        self.silence(5)
        self.hear(voice(-27), 60)
        self.assertNotIn(("clear",), self.transport.sent)
        self.assertEqual(self.call.state, State.SPEAKING)
        self.assertEqual(self.barge_ins(), [("ignore", "background")])
        self.assertEqual(self.decisions("ignore", "background"), 1)
        self.assertEqual([e["reason"] for e in ignored], ["background"])
        # The caller themselves, at their level, still interrupts.
        self.silence(15)
        self.until_cleared(voice(-12))
        self.assertEqual(self.barge_ins(), [("ignore", "background"), ("interrupt", "speech")])

    def test_before_the_caller_has_spoken_there_is_no_background_to_tell(self):
        self.make_call(bot_db=-20, sentences=LONG_REPLY)
        self.assertEqual(self.call.state, State.GREETING)
        self.until_cleared(voice(-27))
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])

    def test_zero_margins_let_the_echo_interrupt(self):
        self.bot_speaking(speakerphone=True, barge_in=BargeInSettings(echo_margin_db=0, background_margin_db=0))
        self.silence(20)
        self.assertIn(("clear",), self.transport.sent)  # the guard is off: the echo is "speech"
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])

    def test_a_partial_of_only_yeah_does_not_interrupt_but_the_words_after_it_do(self):
        self.bot_speaking(streaming=True)
        self.silence(5)
        self.hear(voice(), 4)
        self.call.on_transcript("yeah", False)
        self.hear(voice(), 20)
        self.assertNotIn(("clear",), self.transport.sent)
        self.assertEqual(self.barge_ins(), [("ignore", "backchannel")])
        self.assertEqual(self.decisions("ignore", "backchannel"), 1)
        self.call.on_transcript("yeah I need help", False)
        self.assertLessEqual(self.until_cleared(voice()), FRAME_MS / 1000 + 1e-9)
        self.assertEqual(self.barge_ins(), [("ignore", "backchannel"), ("interrupt", "speech")])

    def test_a_yeah_that_ends_leaves_the_bot_speaking_and_its_final_is_no_turn(self):
        self.bot_speaking(streaming=True)
        self.silence(5)
        self.hear(voice(), 4)
        self.call.on_transcript("yeah", False)
        self.hear(voice(), 10)
        self.silence(15)
        self.call.on_transcript("yeah", True)
        self.play_out()
        self.assertNotIn(("clear",), self.transport.sent)
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.conversation.asked, ["tell me everything"])

    # ---- the echo of a reply that ended -------------------------------------------------------
    def test_the_echo_of_a_replys_end_is_not_the_callers_turn(self):
        # The VAD is still "in speech" as the reply ends (its echo sounds on for a round
        # trip): sound the echo guard would ignore is not the caller already talking.
        self.bot_speaking()
        flushes = self.stt.stream.flushes
        self.speakerphone = True
        self.play_out()  # 3 s of echo, ignored; the reply ends with its echo still coming back
        self.assertEqual(self.barge_ins(), [("ignore", "echo")])
        self.speakerphone = False
        self.silence(30)
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertIsNone(self.call.turn.times.speech_start)
        self.assertEqual(self.stt.stream.flushes, flushes)  # nothing sent to be transcribed
        self.assertNear(self.call._barge_in.caller.db, CALLER_DB, 0.3)  # the echo's level was not learnt
        self.caller_turn("and what else")  # the caller's own next turn is heard as ever
        self.assertEqual(self.conversation.asked, ["tell me everything", "and what else"])

    def test_the_callers_voice_as_a_reply_ends_is_their_turn(self):
        # Over the echo, but at their own level: as the reply ends, the caller is talking.
        self.bot_speaking(speakerphone=True, sentences=("Okay.",))
        while self.clock.seconds() < self.transport.played_until() - 0.1:
            self.silence()
        self.hear(voice(), 5)  # 100 ms: too short to barge in
        self.echo_marks()  # the reply is over: the caller's speech is the new turn
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertIsNotNone(self.call.turn.times.speech_start)
        self.speakerphone = False
        self.hear(voice(), 15)
        self.silence(12)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        self.call.on_transcript("one more thing", True)
        self.assertEqual(self.conversation.asked, ["tell me everything", "one more thing"])
