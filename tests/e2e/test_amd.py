"""End to end: answering machines on outbound calls, with voiced's own detector
(``--amd voiced``) and with Twilio's asynchronous AMD (``--amd carrier``).

Per mode, one real daemon (twistd, local engines) places three calls at once with
``voiced-dial`` through the loopback Twilio REST API (tests/fakes/twilio_rest.py), which
opens each call's media stream as Twilio would and streams a recording as the callee's
audio (tests/fakes/twilio_callee.py): a voicemail greeting ending in a 1 kHz beep
(tests/data/voicemail_greeting_beep.wav), the same greeting cut before its beep, and a
person saying "Hello?" (tests/data/callee_hello.wav). In carrier mode the fake also POSTs
Twilio's signed verdict to the call's AsyncAmdStatusCallback: ``machine_end_beep`` 200 ms
after the beep, ``machine_end_silence`` 800 ms after the beepless greeting, ``human``
1.2 s after the "Hello?" (Twilio's MachineDetectionSpeechEndThreshold).

A machine hears nothing until its beep (or its greeting) is over, then the voicemail
message, then the daemon hangs up (the stream's close, and ``Status=completed`` through
the REST fake); the person hears the greeting. The fake's side measures the beep's end
(when the frame after it went out) and the first bot media frame's arrival; the
journal's calls row and dials row both say who answered. In carrier mode Twilio's verdict
is what greets the person and what leaves the message on the beepless machine; on the
beeping one voiced's beep detector, which acts at once in either mode, comes first and
Twilio's ``machine_end_beep`` arrives after the message began (logged ``AMD_LATE``).
"""

from __future__ import annotations

import os
import sys
import wave

import numpy as np
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import REPO, Daemon, dialling_through, logged
from tests.fakes.twilio_callee import Callee
from tests.fakes.twilio_rest import FakeTwilio, PlacedCall
from voiced.audio import FRAME_MS, read_wav_as_ulaw, silence_ulaw
from voiced.journal import dials, store

DATA = os.path.join(REPO, "tests", "data")
ACCOUNT = "AC" + "a3" * 16
TOKEN = "twilio-auth-token-amd-e2e"
ADMIN = "admin-token-amd-e2e"
MACHINE, SILENT_MACHINE, PERSON = "+15550101", "+15550103", "+15550102"
FRAME_S = FRAME_MS / 1000
# Long enough to be still playing when each recording is over (the callee then waits for its end).
VOICEMAIL = ("Hello {name}, this is Riverside Clinic with a reminder of your appointment on Tuesday at ten. "
             "Please call us back at five five five, zero one zero zero. Goodbye.")
DIALOG = "\n".join([
    "[greeting]", "say = Hello {name}, this is Riverside Clinic calling about your appointment.",
    "[voicemail]", f"say = {VOICEMAIL}",
    "[reprompt]", "say = Sorry, I didn't catch that.",
    "[fallback]", "say = I heard you say: {text}.", ""])


def wav_frames(name: str) -> np.ndarray:
    """The fixture as 20 ms frames of 16-bit samples, one row each."""
    with wave.open(os.path.join(DATA, name)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    per_frame = w.getframerate() * FRAME_MS // 1000
    return pcm[: len(pcm) // per_frame * per_frame].reshape(-1, per_frame)


def last_loud_frame(frames: np.ndarray) -> int:
    return int(np.flatnonzero(np.sqrt((frames ** 2).mean(axis=1)) > 200)[-1])


def beep_frames(frames: np.ndarray, hz: float = 1000.0) -> list[int]:
    """Frames that are the 1 kHz tone: loud, and nearly all their energy in its DFT bin
    (the test's own look at the fixture, apart from voiced's Goertzel bank)."""
    spectrum = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    tone_bin = round(hz * frames.shape[1] / 8000)
    share = spectrum[:, tone_bin] / np.maximum(spectrum.sum(axis=1), 1e-9)
    loud = np.sqrt((frames ** 2).mean(axis=1)) > 1000
    return [int(i) for i in np.flatnonzero((share > 0.8) & loud)]


class _AmdCalls:
    """The callees against one daemon per mode (``amd``), dialled at once."""

    amd = ""
    timeout = 150

    def setUp(self) -> None:
        greeting = wav_frames("voicemail_greeting_beep.wav")
        beep = beep_frames(greeting)
        # The fixture: one beep of 500 ms after the speech, then only silence; its last
        # frame (a part of one: the beep is not frame-aligned) is the recording's last loud one.
        self.assertEqual(beep, list(range(beep[0], beep[-1] + 1)))
        self.assertGreaterEqual(len(beep), 24)
        self.assertIn(last_loud_frame(greeting) - beep[-1], (0, 1))
        self.beep_last = last_loud_frame(greeting)
        self.speech_last = last_loud_frame(greeting[:beep[0]])
        self.hello_last = last_loud_frame(wav_frames("callee_hello.wav"))
        recording = read_wav_as_ulaw(os.path.join(DATA, "voicemail_greeting_beep.wav"))
        samples_per_frame = greeting.shape[1]
        # Some voicemail greetings end with no beep: the same one, cut where its beep begins.
        no_beep = recording[:beep[0] * samples_per_frame] + silence_ulaw(3000)
        self.twilio = FakeTwilio(ACCOUNT, TOKEN, callees={
            MACHINE: Callee(recording, "machine_end_beep", verdict_frame=self.beep_last + 1 + 10),
            # Twilio's verdict on a greeting's end, here 800 ms after it: sooner than voiced's own 1.5 s.
            SILENT_MACHINE: Callee(no_beep, "machine_end_silence", verdict_frame=self.speech_last + 1 + 40),
            # Twilio's human verdict after its MachineDetectionSpeechEndThreshold, 1200 ms.
            PERSON: Callee(read_wav_as_ulaw(os.path.join(DATA, "callee_hello.wav")),
                           "human", verdict_frame=self.hello_last + 1 + 60),
        })
        rundir, env = dialling_through(self, self.twilio, ADMIN, "voiced-e2e-amd-")
        self.journal, self.admin_url = env["VOICED_JOURNAL"], env["VOICED_PUBLIC_URL"]
        script = os.path.join(rundir, "reminder.dialog")
        with open(script, "w", encoding="utf-8") as f:
            f.write(DIALOG)
        self.daemon = Daemon(env={**env, "VOICED_SCRIPT": script, "VOICED_AMD": self.amd})
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()

    def dial(self, to: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICED_")}
        env.update(PYTHONPATH=REPO, VOICED_ADMIN_TOKEN=ADMIN, VOICED_ADMIN_URL=self.admin_url)
        return getProcessOutputAndValue(sys.executable, ["-m", "voiced.outbound.cli", to, "--var", "name=Dana",
                                                         "--wait"], env=env, path=REPO)

    async def test_a_machine_gets_the_message_after_its_greeting_and_a_person_the_greeting(self):
        numbers = (MACHINE, SILENT_MACHINE, PERSON)
        dialled = await gatherResults([self.dial(to) for to in numbers])
        calls = {c.field("To"): c for c in self.twilio.calls}
        reports = {to: await calls[to].done for to in numbers}
        await self.until(lambda: calls[MACHINE].updates and calls[SILENT_MACHINE].updates, "the REST hang-ups")
        for call in calls.values():  # the log writer is a moment behind the hang-ups (the voicemail's BOT line)
            await logged(self.daemon, f"CALL_END call={call.sid} ", 1)
        for out, err, code in dialled:
            self.assertEqual(code, 0, (out.decode(), err.decode(), self.daemon.log()[-3000:]))
        dial_ids = {to: calls[to].parameters["voiced_dial"] for to in calls}
        for to, (out, _, _) in zip(numbers, dialled):
            self.assertEqual(out.decode().splitlines()[0], dial_ids[to])
        for report in reports.values():
            self.assertEqual(report.errors, [])
        self.check_the_request(calls)

        # A machine: nothing until its beep is over, then the voicemail message, then the daemon's hang-up.
        waited_ms = self.check_voicemail(calls[MACHINE], reports[MACHINE], self.beep_last, "reason=beep hz=1000")
        print(f"\nAMD_E2E amd={self.amd} the voicemail message's first frame came {waited_ms:.0f} ms after the "
              f"beep's end", file=sys.stderr)
        # With no beep: after its greeting's end (voiced: 1.5 s of silence; carrier mode: Twilio's verdict).
        cue = "reason=carrier machine_end_silence" if self.amd == "carrier" else "reason=greeting_end"
        self.check_voicemail(calls[SILENT_MACHINE], reports[SILENT_MACHINE], self.speech_last, cue)

        # The person: the greeting, once their "Hello?" is over.
        person = calls[PERSON]
        self.assertGreater(min(person.times.bot_media_at), person.times.sent_at[self.hello_last] + FRAME_S)
        greeting = self.bot_lines(person)
        self.assertTrue(greeting, self.daemon.log()[-3000:])
        self.assertIn("Hello Dana, this is Riverside Clinic calling about your appointment", greeting[0])
        human = self.amd_lines(person, "answered_by=human")
        self.assertEqual(len(human), 1, self.amd_lines(person, ""))
        self.assertIn(f"source={self.amd}", human[0])  # carrier mode: Twilio's verdict is the one acted on
        self.assertEqual(person.updates, [])

        self.assertEqual(self.daemon.stop(), 0)
        conn = store.open_read_only(self.journal)
        for to, who in ((MACHINE, "machine"), (SILENT_MACHINE, "machine"), (PERSON, "human")):
            self.assertEqual([r["answered_by"] for r in store.calls_by_sid(conn, calls[to].sid)], [who])
            self.assertEqual(dials.dial(conn, dial_ids[to])["answered_by"], who)
        conn.close()

    def check_voicemail(self, call: PlacedCall, report, last_frame: int, cue: str) -> float:
        """The message only after frame ``last_frame`` of the recording, then the daemon's hang-up;
        how long after that frame the message's first frame came (ms, the fake's clock)."""
        end = call.times.sent_at[last_frame] + FRAME_S
        self.assertTrue(call.times.bot_media_at, self.daemon.log()[-3000:])
        self.assertGreater(min(call.times.bot_media_at), end)
        said = self.bot_lines(call)
        self.assertEqual(len(said), 1, said)
        self.assertIn("with a reminder of your appointment on Tuesday", said[0])
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(call.updates, [{"Status": "completed"}])
        self.assertTrue(self.amd_lines(call, "answered_by=machine"), self.amd_lines(call, ""))
        left = self.daemon.lines(f"AMD_VOICEMAIL call={call.sid}")
        self.assertEqual(len(left), 1)
        self.assertIn(cue, left[0])
        return (call.times.bot_media_at[0] - end) * 1000

    def check_the_request(self, calls: dict[str, PlacedCall]) -> None:
        for call in calls.values():
            if self.amd == "carrier":
                self.assertEqual((call.field("MachineDetection"), call.field("AsyncAmd")), ("DetectMessageEnd", "true"))
                self.assertEqual(call.field("AsyncAmdStatusCallback"),
                                 f"{self.admin_url}/twilio/amd?dial={call.parameters['voiced_dial']}")
                verdict = self.twilio.callees[call.field("To")].answered_by
                self.assertEqual(call.amd_callbacks, [(verdict, 200)])  # signed, and taken
                self.assertTrue(self.daemon.lines(f"AMD_CALLBACK call={call.sid} answered_by={verdict}"))
            else:
                self.assertNotIn("MachineDetection", call.form)
                self.assertEqual(call.amd_callbacks, [])

    def bot_lines(self, call: PlacedCall) -> list[str]:
        return [line for line in self.daemon.lines(" BOT ") if f"call={call.sid}" in line]

    def amd_lines(self, call: PlacedCall, word: str) -> list[str]:
        return [line for line in self.daemon.lines(f"AMD call={call.sid}") if word in line]

    async def until(self, condition, what: str, attempts: int = 100) -> None:
        for _ in range(attempts):
            if condition():
                return
            await deferLater(reactor, 0.1, lambda: None)
        self.fail(f"never came: {what}\n{self.daemon.log()[-3000:]}")


class VoicedDetectorTests(_AmdCalls, TestCase):
    amd = "voiced"


class CarrierDetectorTests(_AmdCalls, TestCase):
    amd = "carrier"
