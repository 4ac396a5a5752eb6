from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from voiced.audio import ulaw_to_pcm16
from voiced.turns.eou import EndOfUtterance, SpeechEnded, SpeechStarted
from voiced.turns.vad import WebRtcVoiceActivity

VOICED, SILENT = b"\x01" * 160, b"\xff" * 160
VOICED_PCM = ulaw_to_pcm16(VOICED)


def feed(detector, clock, pattern):
    """pattern: string of 'v' (voiced) and '.' (silent) 20 ms frames, arriving in real time."""
    events = []
    for ch in pattern:
        clock.advance(0.02)
        events += detector.push(VOICED if ch == "v" else SILENT)
    return events


class EndOfUtteranceTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.eou = EndOfUtterance(self.clock, lambda pcm: pcm == VOICED_PCM, eou_silence_ms=240, min_speech_ms=60)

    def test_speech_start_after_min_speech_and_end_after_silence(self):
        events = feed(self.eou, self.clock, "..." + "v" * 10 + "." * 12)
        self.assertEqual(len(events), 2)
        start, end = events
        self.assertIsInstance(start, SpeechStarted)
        self.assertAlmostEqual(start.at, 0.06)  # the start of the 4th frame
        self.assertIsInstance(end, SpeechEnded)
        self.assertAlmostEqual(end.at, 0.26)  # the arrival of the last voiced frame, not the EOU decision

    def test_short_click_is_not_speech(self):
        self.assertEqual(feed(self.eou, self.clock, "vv...vv...."), [])

    def test_short_pause_does_not_end_the_utterance(self):
        events = feed(self.eou, self.clock, "vvvvv" + "." * 11 + "vvvvv" + "." * 12)
        self.assertEqual([type(e) for e in events], [SpeechStarted, SpeechEnded])

    def test_voiced_ms_counts_only_voiced_frames(self):
        feed(self.eou, self.clock, "vvvv..vvvv")
        self.assertEqual(self.eou.voiced_ms, 160)
        self.assertTrue(self.eou.in_speech)

    def test_sustained_speech_tolerates_small_gaps(self):
        feed(self.eou, self.clock, "vvvv.vvv")
        self.assertTrue(self.eou.sustained(160))
        self.assertFalse(self.eou.sustained(200))

    def test_a_short_cough_is_not_sustained(self):
        for _ in range(10):
            feed(self.eou, self.clock, "v" * 6 + "." * 15)  # 120 ms bursts
            self.assertFalse(self.eou.sustained(160))

    def test_frames_of_other_sizes_are_recut(self):
        events = []
        for _ in range(5):
            self.clock.advance(0.03)
            events += self.eou.push(VOICED + VOICED[:80])
        self.assertIsInstance(events[0], SpeechStarted)

    def test_vad_hangover_is_not_speech(self):
        """webrtcvad calls ~100 ms of near-silence after a word 'voiced': it must
        count as silence, and the speech end is the last audible frame."""
        hangover = b"\xfe" * 160  # near-zero amplitude
        eou = EndOfUtterance(self.clock, lambda pcm: pcm in (VOICED_PCM, ulaw_to_pcm16(hangover)), eou_silence_ms=240, min_speech_ms=60)
        events = []
        for frame in [VOICED] * 10 + [hangover] * 5 + [SILENT] * 7:
            self.clock.advance(0.02)
            events += eou.push(frame)
        self.assertEqual([type(e) for e in events], [SpeechStarted, SpeechEnded])
        self.assertAlmostEqual(events[1].at, 0.20)
        self.assertAlmostEqual(self.clock.seconds(), 0.44)  # 240 ms after the last audible frame

    def test_end_speech_now(self):
        feed(self.eou, self.clock, "vvvvv..")
        self.eou.end_speech_now()
        self.assertFalse(self.eou.in_speech)
        self.assertEqual(feed(self.eou, self.clock, "." * 20), [])


class WebRtcVoiceActivityTests(SynchronousTestCase):
    def test_tone_is_speechlike_and_silence_is_not(self):
        import math

        import struct

        vad = WebRtcVoiceActivity(0).open(lambda p: None).push
        tone = struct.pack("<160h", *(int(8000 * math.sin(2 * math.pi * 300 * i / 8000)) for i in range(160)))
        self.assertFalse(vad(ulaw_to_pcm16(SILENT)))
        results = [vad(tone) for _ in range(10)]
        self.assertTrue(any(results))

    def test_the_c_call_answers_as_webrtcvad_is_speech_does(self):
        """The stream skips webrtcvad.Vad.is_speech's Python layer: same answers, frame
        after frame (the VAD adapts as it goes, so two instances are fed side by side)."""
        import random

        import webrtcvad

        rng = random.Random(5)
        for mode in (0, 3):
            ours, theirs = WebRtcVoiceActivity(mode).open(lambda p: None).push, webrtcvad.Vad(mode)
            for i in range(300):
                level = rng.choice((0, 2, 40, 2000, 12000))
                frame = bytes(rng.randrange(256) if level else 0xFF for _ in range(160))
                pcm = ulaw_to_pcm16(frame) if level else ulaw_to_pcm16(SILENT)
                expected = theirs.is_speech(pcm, 8000)
                self.assertEqual(ours(pcm), 1.0 if expected else 0.0)


class WholeFrameTests(SynchronousTestCase):
    """A 20 ms push is classified without the re-cut; it must decide as the re-cut does."""

    def test_frame_pushes_and_recut_pushes_decide_alike(self):
        import random

        rng = random.Random(3)
        audio = b"".join(VOICED * rng.randrange(1, 30) + SILENT * rng.randrange(1, 30) for _ in range(30))
        runs = []
        for sizes in ([160], [80, 240], [7, 313, 160, 0]):
            clock = Clock()
            eou = EndOfUtterance(clock, WebRtcVoiceActivity(3), eou_silence_ms=240, min_speech_ms=60)
            trace, pos, k = [], 0, 0
            while pos < len(audio):
                size = sizes[k % len(sizes)]
                k += 1
                chunk, pos = audio[pos: pos + size], pos + size
                clock.advance(0.02)
                for event in eou.push(chunk):
                    trace.append(type(event).__name__)
            trace.append(eou._noise_rms)
            runs.append(trace)
        self.assertGreater(runs[0].count("SpeechStarted"), 3)
        self.assertEqual(runs[0], runs[1])  # the same events in the same order, the same noise floor
        self.assertEqual(runs[0], runs[2])
