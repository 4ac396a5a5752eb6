"""Smart Turn v3.2 on real speech: features, probabilities, batching, bad input, the model file.

The clips in tests/data are real conversational English (16 kHz mono PCM16):

- ``turn_sheila_texas.wav``: /work/shared/audio/sample.wav [14.44 s, 17.82 s), a telephone call
  (band-limited to 3.4 kHz) from pyannote-audio's sample: "And I'm Sheila in Texas, originally
  from Chicago." It ends her turn: the other speaker answers at once ("Oh, I'm originally from
  Chicago also"), and it is a whole declarative sentence with a falling end.
- ``turn_phone_room_tone.wav``: the same call's line between turns, [4.10 s, 4.30 s) (-71 dBFS):
  appended as the 200 ms of silence after which a VAD asks the model (Smart Turn is trained on
  clips that end with ~200 ms of silence). The call's real pause after "Chicago" is only 160 ms
  before the other voice, so the line's own silence is borrowed from earlier in the call.
- ``turn_ready_to_begin.wav``: pyannote-audio's tests/data/dev00.wav (an AMI meeting, wideband
  headset; the copy in /work/shared/audio is all zeros, so it was cut from the original 32-bit
  float file), [1.44 s, 4.00 s): "Okay, well, I think we're ready to begin." with its real 200 ms
  pause. A chair's opening sentence, complete, falling end, a 1.7 s pause after it.

The cuts "And I'm Sheila in |" (1.11 s, between "in" and "Texas") and "..., originally from |"
(2.84 s, before "Chicago") are at word boundaries found on the energy envelope (20 ms frames
below -60 dBFS between the words). They are clear: both end on a preposition, which no English
sentence can. Smart Turn hears prosody, not syntax: some fluent sentences cut at a word
boundary sound finished to it (e.g. "I think we're ready to |" scores 0.93; see the report),
so these tests use only cases where the model is clearly right.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import unittest
import wave

import numpy as np
from twisted.trial.unittest import TestCase

from voiced.audio import pcm16_to_ulaw, resample_pcm16, ulaw_to_pcm16
from voiced.turns import whisper_features
from voiced.turns.smart_turn import (
    MODEL_FILE,
    MODEL_SHA256,
    SmartTurnInference,
    SmartTurnModelError,
    TurnAudioError,
    bundled_model_path,
    check_turn_audio,
    model_window,
    verified_model_path,
)

DATA = os.path.join(os.path.dirname(__file__), "data")
RATE = 16000
COMPLETE_AT_LEAST = 0.8
INCOMPLETE_AT_MOST = 0.1

_model: SmartTurnInference | None = None


def clip(name: str) -> bytes:
    with wave.open(os.path.join(DATA, name)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        return w.readframes(w.getnframes())


def ms(milliseconds: int) -> int:
    """Bytes of PCM16 at 16 kHz."""
    return milliseconds * RATE // 1000 * 2


def telephone(pcm16_16k: bytes) -> bytes:
    """What a Twilio call carries: 8 kHz, through mu-law and back."""
    return ulaw_to_pcm16(pcm16_to_ulaw(resample_pcm16(pcm16_16k, RATE, 8000)))


def cases() -> dict[str, tuple[bytes, bool]]:
    """Utterance (16 kHz PCM16, ending in 200 ms of the line's silence) -> is the turn complete."""
    sheila, tone = clip("turn_sheila_texas.wav"), clip("turn_phone_room_tone.wav")
    return {
        "And I'm Sheila in Texas, originally from Chicago.": (sheila + tone, True),
        "Okay, well, I think we're ready to begin.": (clip("turn_ready_to_begin.wav"), True),
        "And I'm Sheila in |": (sheila[: ms(1110)] + tone, False),
        "And I'm Sheila in Texas, originally from |": (sheila[: ms(2840)] + tone, False),
    }


class ModelTestCase(TestCase):
    def setUp(self) -> None:
        global _model
        for module in ("onnxruntime", "pipecat"):
            if importlib.util.find_spec(module) is None:
                raise unittest.SkipTest(f"{module} is not installed (pip install onnxruntime pipecat-ai==1.14.0)")
        if _model is None:
            _model = SmartTurnInference()  # loaded once for the module: ~0.3 s
        self.model = _model


class FeaturesTests(ModelTestCase):
    def reference(self):
        """pipecat's numpy port of Hugging Face's WhisperFeatureExtractor, loaded by path: it imports
        numpy only, so pipecat itself stays unimported."""
        path = os.path.join(os.path.dirname(os.path.dirname(bundled_model_path())), "_whisper_features.py")
        spec = importlib.util.spec_from_file_location("_reference_whisper_features", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.assertFalse([name for name in sys.modules if name.split(".")[0] == "pipecat"])
        return module

    def test_log_mel_matches_the_reference_on_real_speech(self):
        reference = self.reference()
        for name, (pcm, _) in cases().items():
            for audio, rate in ((pcm, RATE), (telephone(pcm), 8000)):
                window = model_window(audio, rate)
                ours = whisper_features.log_mel(window)
                theirs = reference.compute_whisper_log_mel_features(window, do_normalize=True)
                self.assertEqual(ours.shape, (80, 800))
                np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=f"{name} at {rate} Hz")

    def test_the_window_is_the_last_8_seconds_zero_padded_at_the_start(self):
        speech = clip("turn_sheila_texas.wav")
        window = model_window(speech, RATE)
        samples = np.frombuffer(speech, dtype="<i2").astype(np.float32) / 32768.0
        self.assertEqual(window.shape, (8 * RATE,))
        np.testing.assert_array_equal(window[: 8 * RATE - samples.size], 0.0)
        np.testing.assert_array_equal(window[-samples.size :], samples)
        # Longer than 8 s: what came before the last 8 s does not count.
        long = speech * 3  # 10.1 s
        np.testing.assert_array_equal(model_window(long, RATE), np.frombuffer(long, dtype="<i2")[-8 * RATE :] / 32768.0)
        self.assertEqual(model_window(telephone(long), 8000).shape, (8 * RATE,))


class ProbabilityTests(ModelTestCase):
    def test_complete_turns_score_high_and_mid_phrase_cuts_low(self):
        for name, (pcm, complete) in cases().items():
            p = self.model.predict_blocking(pcm, RATE)
            if complete:
                self.assertGreaterEqual(p, COMPLETE_AT_LEAST, name)
            else:
                self.assertLessEqual(p, INCOMPLETE_AT_MOST, name)

    def test_a_telephone_call_at_8_khz_mu_law_agrees_with_16_khz(self):
        for name, (pcm, complete) in cases().items():
            wide, narrow = self.model.run_batch([(pcm, RATE), (telephone(pcm), 8000)])
            if complete:
                self.assertGreaterEqual(narrow, COMPLETE_AT_LEAST, name)
            else:
                self.assertLessEqual(narrow, INCOMPLETE_AT_MOST, name)
            self.assertLess(abs(wide - narrow), 0.1, name)

    def test_a_batch_gives_each_item_what_it_gets_alone(self):
        items = [(pcm, RATE) for pcm, _ in cases().values()] + [(telephone(pcm), 8000) for pcm, _ in cases().values()]
        self.assertTrue(self.model.batches_natively)  # v3.2's batch dimension is symbolic
        together = self.model.run_batch(items)
        alone = [self.model.run_batch([item])[0] for item in items]
        self.assertEqual(len(together), len(items))
        for t, a in zip(together, alone):
            self.assertAlmostEqual(t, a, places=6)
        self.assertEqual(self.model.run_batch([]), [])

    def test_a_single_sample_is_an_utterance_too(self):
        p = self.model.predict_blocking(b"\x10\x00", 8000)
        self.assertTrue(0.0 <= p <= 1.0)


class BadInputTests(ModelTestCase):
    def test_bad_audio_is_a_clear_error_and_the_model_goes_on(self):
        good = cases()["And I'm Sheila in |"][0]
        for pcm16, rate, words in (
            (good[:-1], RATE, "not whole 16-bit samples"),
            (good, 44100, "sample rate 44100 Hz not supported"),
            (good, 0, "sample rate 0 Hz not supported"),
            (b"", 8000, "no audio"),
            (np.frombuffer(good, dtype="<i2"), RATE, "must be bytes, not ndarray"),
        ):
            with self.assertRaises(TurnAudioError) as raised:
                check_turn_audio(pcm16, rate)
            self.assertIn(words, str(raised.exception))
            with self.assertRaises(TurnAudioError):
                self.model.run_batch([(good, RATE), (pcm16, rate)])
            self.assertIsInstance(raised.exception, ValueError)
        self.assertLessEqual(self.model.predict_blocking(good, RATE), INCOMPLETE_AT_MOST)


class ModelFileTests(ModelTestCase):
    def scratch(self) -> str:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        return directory

    def test_the_bundled_file_is_found_without_importing_pipecat_and_checked(self):
        path = bundled_model_path()
        self.assertEqual(os.path.basename(path), MODEL_FILE)
        self.assertEqual(verified_model_path(), path)
        self.assertFalse([name for name in sys.modules if name.split(".")[0] == "pipecat"])
        with open(path, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), MODEL_SHA256)

    def test_another_file_is_refused_with_its_name_and_the_install_command(self):
        other = os.path.join(self.scratch(), MODEL_FILE)
        with open(other, "wb") as f:
            f.write(b"not the model")
        with self.assertRaises(SmartTurnModelError) as raised:
            SmartTurnInference(model_path=other)
        self.assertIn(other, str(raised.exception))
        self.assertIn("pip install pipecat-ai==1.14.0", str(raised.exception))

    def test_a_missing_file_is_refused_with_its_name(self):
        missing = os.path.join(self.scratch(), "nowhere.onnx")
        with self.assertRaises(SmartTurnModelError) as raised:
            verified_model_path(missing)
        self.assertIn(missing, str(raised.exception))

    def test_an_explicit_path_to_the_right_file_loads(self):
        model = SmartTurnInference(model_path=bundled_model_path(), intra_op_threads=2)
        self.assertEqual(model.model_path, bundled_model_path())
        pcm = cases()["And I'm Sheila in Texas, originally from Chicago."][0]
        self.assertAlmostEqual(model.predict_blocking(pcm, RATE), self.model.predict_blocking(pcm, RATE), places=6)
