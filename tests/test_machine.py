"""Answering machines on outbound calls, on a real ``Call`` on a Clock (tests/turn_harness.py):
a person's "Hello?" gets the greeting; a voicemail greeting and its beep get the script's
voicemail message after the beep, then a hang-up; Twilio's verdict when it is asked."""

from __future__ import annotations

from twisted.internet.task import Clock

from tests.turn_harness import NearTestCase, logged, tone, voice
from tests.testing.machine import GREETING, VOICEMAIL, OutboundCall
from voiced.options import default
from voiced.agent.base import CallInfo, Voicemail
import os

from voiced.audio import FRAME_MS, frames, read_wav_as_ulaw
from voiced.call.machine import AnsweringMachine, MachineSettings, Phase, answering_machine
from voiced.call.turn import State
from voiced.turns.vad import WebRtcVoiceActivity

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

BEEP = tone(-12.0, FRAME_MS, freq=1000)


class PersonTests(OutboundCall):
    def test_hello_gets_the_greeting(self):
        call = self.make_call()
        self.silence(0.8)  # the phone is picked up
        self.assertEqual(self.tts.spoken, [])  # nothing is said over the callee's answer
        self.hear(voice(), 0.5)  # "Hello?"
        self.silence(0.7)
        self.assertEqual(self.tts.spoken, [])
        self.silence(0.4)  # the pause after it: a person waiting to be answered
        self.assertEqual(self.tts.spoken, GREETING)
        self.assertEqual(call.record.answered_by, "human")
        self.assertEqual(self.answered("human", "voiced"), 1)
        self.assertEqual(self.amd_lines[0]["who"], "human")
        self.assertEqual(self.amd_lines[0]["source"], "voiced")
        self.play_out()
        self.assertEqual(call.state, State.LISTENING)  # then the call goes on as any other
        self.assertNotIn(("hangup",), self.transport.sent)

    def test_a_callee_who_says_nothing_is_greeted(self):
        call = self.make_call()
        self.silence(2.4)
        self.assertEqual(self.tts.spoken, [])
        self.silence(0.2)
        self.assertEqual(self.tts.spoken, GREETING)
        self.assertEqual(call.record.answered_by, "unknown")

    def test_the_silence_waited_is_the_outbound_hello_timeout(self):
        call = self.make_call(outbound_hello_timeout_ms=4000)
        self.silence(3.9)
        self.assertEqual(self.tts.spoken, [])
        self.silence(0.2)
        self.assertEqual(self.tts.spoken, GREETING)
        self.assertEqual(call.record.answered_by, "unknown")

    def test_the_callees_hello_is_no_turn_for_the_agent(self):
        call = self.make_call()
        self.hear(voice(), 0.5)
        call.on_transcript("Hello?", True)
        self.silence(1.2)
        self.play_out()
        self.assertEqual(call.record.turns, [])
        self.assertEqual(call.state, State.LISTENING)

    def test_keys_pressed_while_it_decides_are_not_answered(self):
        call = self.make_call()
        call.on_dtmf("5")
        self.assertEqual(self.tts.spoken, [])
        self.assertEqual(call.record.turns, [])

    def test_an_inbound_call_is_greeted_at_once(self):
        call = self.make_call(direction="inbound")
        self.assertEqual(self.tts.spoken, GREETING)
        self.assertEqual(call.record.answered_by, "")

    def test_amd_off_greets_after_the_callees_first_words_wait(self):
        call = self.make_call(amd="off")  # voiced.call.first_words: the callee may speak first
        self.assertEqual(self.tts.spoken, [])
        self.clock.advance(default("outbound_hello_timeout_ms") / 1000)
        self.assertEqual(self.tts.spoken, GREETING)
        self.assertEqual(call.record.answered_by, "")


class VoicemailTests(OutboundCall):
    def test_a_monologue_then_a_beep_gets_the_message_after_the_beep_then_a_hang_up(self):
        call = self.make_call()
        self.silence(0.5)
        self.monologue(6.0)
        self.assertEqual(call.record.answered_by, "machine")  # decided at 3.5 s of it
        self.assertEqual(self.tts.spoken, [])  # but nothing said over the greeting
        self.silence(0.4)
        self.hear(BEEP, 0.5)
        self.assertEqual(self.tts.spoken, [])  # not over the beep either
        beep_end = self.clock.seconds()
        self.silence(0.1)
        self.assertEqual(self.tts.spoken, VOICEMAIL)
        self.assertEqual(call.turn.event, Voicemail())
        first_audio_at = self.clock.seconds()
        self.assertLess(first_audio_at - beep_end, 0.2)
        self.play_out()
        self.assertEqual(self.transport.sent[-1], ("hangup",))
        self.assertEqual(call.state, State.HANGING_UP)
        call.close("stream closed")
        self.assertEqual(call.record.end_reason, "voicemail left")
        self.assertEqual(call.record.turns[0].event, {"voicemail": True})
        self.assertEqual(call.record.turns[0].reply_text, " ".join(VOICEMAIL))
        self.assertNotIn(GREETING[0], self.tts.spoken)
        self.assertEqual(self.answered("machine", "voiced"), 1)

    def test_no_beep_the_message_follows_the_greetings_end(self):
        call = self.make_call()
        self.monologue(5.1)  # its last 0.3 s a breath
        self.silence(1.1)  # 1.4 s since its last word
        self.assertEqual(self.tts.spoken, [])
        self.silence(0.2)
        self.assertEqual(self.tts.spoken, VOICEMAIL)
        self.assertEqual(call.record.answered_by, "machine")

    def test_the_machine_talking_over_the_message_does_not_stop_it(self):
        self.make_call()
        self.monologue(4.0)
        self.hear(BEEP, 0.4)
        self.silence(0.1)
        self.assertEqual(self.tts.spoken, VOICEMAIL)
        self.hear(voice(), 1.0)  # "The mailbox is ..."
        self.assertEqual(self.transport.sent.count(("clear",)), 0)
        self.play_out()
        self.assertEqual(self.transport.sent[-1], ("hangup",))

    def test_a_beep_at_once_is_a_machine_ready_to_record(self):
        call = self.make_call()
        self.silence(0.3)
        self.hear(BEEP, 0.4)
        self.silence(0.1)
        self.assertEqual(self.tts.spoken, VOICEMAIL)
        self.assertEqual(call.record.answered_by, "machine")
        self.assertIn("beep", self.amd_lines[0]["reason"])

    def test_a_greeting_that_never_ends_gets_the_message_at_the_max_wait(self):
        call = self.make_call()
        self.monologue(24.0)
        self.assertEqual(self.tts.spoken, VOICEMAIL)
        self.assertEqual(call.record.answered_by, "machine")


class EndingTests(OutboundCall):
    def test_a_drain_while_it_decides_says_goodbye_and_nothing_else(self):
        call = self.make_call()
        self.hear(voice(), 0.5)
        call.drain_goodbye()
        self.silence(1.5)  # voiced would have said "human" by now
        self.assertNotIn(GREETING[0], self.tts.spoken)
        self.play_out()
        self.assertEqual(self.transport.sent[-1], ("hangup",))

    def test_the_time_limit_runs_from_the_answer(self):
        call = self.make_call(max_call_s=5)
        self.hear(voice(), 4.9)
        self.assertEqual(self.tts.spoken, [])
        self.hear(voice(), 0.2)  # a machine talking on: its message would wait; the limit does not
        self.assertEqual(self.tts.spoken, [call.settings.time_limit_phrase])
        self.monologue(5.0)
        self.assertEqual(self.tts.spoken, [call.settings.time_limit_phrase], "and nothing after it")


class CarrierVerdictTests(OutboundCall):
    def test_the_carriers_machine_end_beep_leaves_the_message_at_once(self):
        call = self.make_call(amd="carrier")
        self.monologue(9.0)
        self.assertEqual(self.tts.spoken, [])
        self.assertTrue(call.carrier_amd("machine_end_beep"))
        self.assertEqual(self.tts.spoken, VOICEMAIL)
        self.assertEqual(self.answered("machine", "voiced"), 1)  # voiced's, after 6 s without the carrier's
        self.play_out()
        self.assertEqual(self.transport.sent[-1], ("hangup",))

    def test_carrier_mode_waits_for_the_carriers_word(self):
        call = self.make_call(amd="carrier")
        self.hear(voice(), 0.5)
        self.silence(1.5)  # voiced would have said "human" by now
        self.assertEqual(self.tts.spoken, [])
        call.carrier_amd("human")
        self.assertEqual(self.tts.spoken, GREETING)
        self.assertEqual(call.record.answered_by, "human")
        self.assertEqual(self.answered("human", "carrier"), 1)
        late = logged(self, "AMD_LATE")
        call.carrier_amd("machine_end_beep")  # once the call has opened, a verdict changes nothing
        self.assertEqual(self.tts.spoken, GREETING)
        self.assertEqual(call.record.answered_by, "human")
        self.assertEqual(len(late), 1)

    def test_a_late_carrier_falls_back_to_voiceds_verdict(self):
        self.make_call(amd="carrier")
        self.hear(voice(), 0.5)
        self.silence(5.4)
        self.assertEqual(self.tts.spoken, [])
        self.silence(0.2)  # 6 s: the carrier is late
        self.assertEqual(self.tts.spoken, GREETING)
        self.assertEqual(self.answered("human", "voiced"), 1)

    def test_a_fax_is_hung_up_on(self):
        call = self.make_call(amd="carrier")
        call.carrier_amd("fax")
        self.assertEqual(self.transport.sent, [("hangup",)])
        self.assertEqual(call.record.answered_by, "machine")
        call.close("stream closed")
        self.assertEqual(call.record.end_reason, "fax answered")

    def test_a_value_twilio_never_sends_is_ignored(self):
        call = self.make_call(amd="carrier")
        call.carrier_amd("robot")
        self.assertEqual(self.transport.sent, [])
        self.assertEqual(call.record.answered_by, "")

    def test_a_call_without_detection_says_so(self):
        call = self.make_call(amd="off")
        self.assertFalse(call.carrier_amd("human"))

    def test_carrier_mode_on_a_carrier_without_a_verdict_is_voiceds(self):
        self.make_call(amd="carrier", carrier="telnyx")
        self.hear(voice(), 0.5)
        self.silence(1.2)
        self.assertEqual(self.tts.spoken, GREETING)


class MachinePartTests(NearTestCase):
    def test_only_an_outbound_call_with_detection_on_gets_one(self):
        clock = Clock()
        outbound = CallInfo("CA1", "MZ1", direction="outbound")
        self.assertIsNone(answering_machine(CallInfo("CA1", "MZ1"), clock, "voiced", None))
        self.assertIsNone(answering_machine(outbound, clock, "off", None))
        self.assertIsInstance(answering_machine(outbound, clock, "voiced", None), AnsweringMachine)

    def test_a_bad_mode_is_a_clear_error(self):
        with self.assertRaises(ValueError):
            AnsweringMachine("CA1", Clock(), "sometimes", None)

    def test_closed_it_does_nothing_more(self):
        clock = Clock()
        done = []

        class Host:
            def answered(self, *args):
                done.append(args)

            open_with_greeting = leave_voicemail = hang_up_on_fax = lambda self: done.append("acted")

        machine = AnsweringMachine("CA1", clock, "voiced", Host(), MachineSettings())
        machine.start()
        machine.close()
        clock.advance(60)
        self.assertEqual(done, [])
        self.assertIs(machine.phase, Phase.DONE)


class RecordedAnswerTests(OutboundCall):
    """The e2e fixtures (espeak speech; a 1 kHz beep) through webrtcvad, as a real call hears them."""

    def play(self, name: str) -> list[bytes]:
        self.make_call(vad=WebRtcVoiceActivity(2))
        return frames(read_wav_as_ulaw(os.path.join(DATA, name)))

    def test_a_recorded_hello_gets_the_greeting(self):
        for frame in self.play("callee_hello.wav"):
            self.clock.advance(FRAME_MS / 1000)
            self.call.on_media(frame)
        self.assertEqual(self.tts.spoken[:len(GREETING)], GREETING)
        self.assertEqual(self.call.record.answered_by, "human")

    def test_a_recorded_voicemail_greeting_gets_the_message_after_its_beep(self):
        spoken_at = None
        for n, frame in enumerate(self.play("voicemail_greeting_beep.wav")):
            self.clock.advance(FRAME_MS / 1000)
            self.call.on_media(frame)
            if spoken_at is None and self.tts.spoken:
                spoken_at = (n + 1) * FRAME_MS
        self.assertEqual(self.tts.spoken, VOICEMAIL)
        self.assertEqual(self.call.record.answered_by, "machine")
        beep_end_ms = len(frames(read_wav_as_ulaw(os.path.join(DATA, "voicemail_greeting_beep.wav")))) * FRAME_MS \
            - 3000
        self.assertLessEqual(abs(spoken_at - beep_end_ms), 100)  # just after the beep
        self.play_out()
        self.assertEqual(self.transport.sent[-1], ("hangup",))
