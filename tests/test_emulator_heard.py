"""The scripted emulator's heard table (voiced-emulator --scripted --heard): audio it was told
about gets the words said in it, utterance by utterance; other audio gets the script.

The "speech" is synthetic (seeded noise at a caller's level), sent as a caller's line sends
it: over hiss, through mu-law, in feeds of any size.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile

import grpc
import numpy as np
from google.cloud import speech
from google.cloud.speech_v1.services.speech.transports import SpeechGrpcTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.emulator import TIMEOUT, audio_requests, finals, interims, streaming_config
from voiced.audio import SAMPLE_RATE, audioop, pcm16_to_ulaw, ulaw_to_pcm16
from voiced.emulator.heard import HeardTable, Phrase, heard_document, load_heard, parse_heard
from voiced.emulator.main import main
from voiced.emulator.recognizer import Transcript
from voiced.emulator.scripted import EnergySession, ScriptedPlan
from voiced.emulator.server import Emulator

SCRIPT = "the script's words"


def speech_like(seconds: float, seed: int, rms: float = 1600.0) -> np.ndarray:
    """``seconds`` of loud noise, different for every seed: a caller's words to the energy rule."""
    return np.clip(np.random.default_rng(seed).normal(0.0, rms, int(seconds * SAMPLE_RATE)), -32768, 32767
                   ).astype(np.int16)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.int16)


def on_the_line(*parts: np.ndarray, seed: int = 99) -> bytes:
    """The parts back to back, over -60 dBFS hiss, mu-law encoded: what a caller's line sends."""
    pcm = np.concatenate(parts).astype(np.float64)
    pcm += np.random.default_rng(seed).normal(0.0, 33.0, len(pcm))
    return audioop.lin2ulaw(np.clip(pcm, -32768, 32767).astype(np.int16).tobytes(), 2)


def table(*phrases: tuple[str, np.ndarray]) -> HeardTable:
    return HeardTable([Phrase(text, pcm) for text, pcm in phrases])


def transcripts(plan: ScriptedPlan, ulaw: bytes, feed: int = 160) -> list[Transcript]:
    session = EnergySession(plan)
    pcm = ulaw_to_pcm16(ulaw)
    out = []
    for i in range(0, len(pcm), feed):
        out += session.feed(pcm[i: i + feed])
    return out


def final_texts(outputs: list[Transcript]) -> list[str]:
    return [o.text for o in outputs if o.is_final]


FIRST = speech_like(0.9, seed=1)  # "what's the username and"
SECOND = speech_like(0.5, seed=2)  # "password?"
HALVES = table(("what's the username and", FIRST), ("password?", SECOND))


class HeardSessionTests(SynchronousTestCase):
    """EnergySession with a heard table: no server."""

    def test_a_phrase_said_whole_gets_its_words_and_partials_grow_with_them(self) -> None:
        words = "one two three four five six seven eight"
        plan = ScriptedPlan(SCRIPT, heard=table((words, speech_like(1.6, seed=3))))
        outputs = transcripts(plan, on_the_line(quiet(0.3), speech_like(1.6, seed=3), quiet(0.6)))
        self.assertEqual(final_texts(outputs), [words])
        partials = [o.text for o in outputs if not o.is_final]
        self.assertEqual(len(partials), 2)  # at 0.7 and 1.4 s of speech: the words said by then
        self.assertTrue(all(words.startswith(p) and p != words for p in partials), partials)
        self.assertLess(len(partials[0]), len(partials[1]))

    def test_a_paused_sentence_gets_a_final_per_half_with_that_halfs_words(self) -> None:
        plan = ScriptedPlan(SCRIPT, heard=HALVES)
        ulaw = on_the_line(quiet(0.2), FIRST, quiet(0.7), SECOND, quiet(0.5))
        self.assertEqual(final_texts(transcripts(plan, ulaw)), ["what's the username and", "password?"])
        # Said without the pause: one utterance, the halves' words in the order said.
        whole = on_the_line(quiet(0.2), FIRST, SECOND, quiet(0.5))
        self.assertEqual(final_texts(transcripts(plan, whole)), ["what's the username and password?"])

    def test_a_phrase_split_by_a_pause_of_its_own_gets_each_part_its_words(self) -> None:
        # One phrase whose speaker paused mid-way: each utterance gets the words around its keys.
        alpha, beta = speech_like(0.8, seed=4), speech_like(0.8, seed=5)
        plan = ScriptedPlan(SCRIPT, heard=table(("alpha beta", np.concatenate([alpha, beta]))))
        ulaw = on_the_line(quiet(0.2), alpha, quiet(0.6), beta, quiet(0.5))
        self.assertEqual(final_texts(transcripts(plan, ulaw)), ["alpha", "beta"])

    def test_audio_the_table_does_not_know_gets_the_script(self) -> None:
        plan = ScriptedPlan((SCRIPT, "the second line"), heard=HALVES)
        stranger = speech_like(0.9, seed=6)
        # The known phrase 15 dB down (background talk) is not the caller saying it.
        background = (FIRST * 10 ** (-15 / 20)).astype(np.int16)
        ulaw = on_the_line(quiet(0.2), stranger, quiet(0.5), background, quiet(0.5), FIRST, quiet(0.5))
        self.assertEqual(final_texts(transcripts(plan, ulaw)),
                         [SCRIPT, "the second line", "what's the username and"])

    def test_frame_alignment_and_feed_sizes_do_not_matter(self) -> None:
        plan = ScriptedPlan(SCRIPT, heard=HALVES)
        for lead in (0, 1, 7, 80, 159, 163):  # samples of quiet before: the phrase at any offset
            ulaw = on_the_line(quiet(0.2), quiet(lead / SAMPLE_RATE), FIRST, quiet(0.7), SECOND, quiet(0.5))
            for feed in (1, 7, 333, 4001, len(ulaw) * 2):  # bytes of PCM16 per feed, odd ones too
                self.assertEqual(final_texts(transcripts(plan, ulaw, feed)), ["what's the username and", "password?"],
                                 f"{lead} samples of lead, feeds of {feed} bytes")

    def test_without_a_table_nothing_is_kept(self) -> None:
        session = EnergySession(ScriptedPlan(SCRIPT))
        outputs = session.feed(ulaw_to_pcm16(on_the_line(quiet(0.2), FIRST, quiet(0.5))))
        self.assertEqual(final_texts(outputs), [SCRIPT])
        self.assertIsNone(session._listening)


class HeardFileTests(SynchronousTestCase):
    def write(self, document: object) -> str:
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(document if isinstance(document, str) else json.dumps(document))
        self.addCleanup(os.unlink, path)
        return path

    def test_a_file_round_trips_in_mulaw_and_pcm16(self) -> None:
        ulaw = pcm16_to_ulaw(FIRST.tobytes())
        loaded = load_heard(self.write(heard_document([("first half", ulaw)])))
        self.assertEqual(loaded.phrases[0].text, "first half")
        pcm = {"phrases": [{"text": "first", "pcm16": base64.b64encode(FIRST.tobytes()).decode()}]}
        self.assertEqual(parse_heard(pcm).phrases[0].pcm.tobytes(), FIRST.tobytes())

    def test_bad_input_gets_a_clear_error(self) -> None:
        audio = base64.b64encode(FIRST.tobytes()).decode()
        for document, expected in [
            ("{not json", "is not JSON"),
            ({"phrase": []}, "expected"),
            ({"phrases": []}, "expected"),
            ({"phrases": [{"text": " ", "pcm16": audio}]}, "phrase 1 needs a non-empty"),
            ({"phrases": [{"text": "a"}]}, 'one of "ulaw" or "pcm16"'),
            ({"phrases": [{"text": "a", "ulaw": audio, "pcm16": audio}]}, 'one of "ulaw" or "pcm16"'),
            ({"phrases": [{"text": "a", "ulaw": "***"}]}, "not base64"),
            ({"phrases": [{"text": "a", "pcm16": base64.b64encode(b"abc").decode()}]}, "odd number of bytes"),
            ({"phrases": [{"text": "a", "pcm16": base64.b64encode(quiet(1.0).tobytes()).decode()}]},
             "nothing the scripted mode would hear as speech"),
            ({"phrases": [{"text": "a", "pcm16": audio}, {"text": "b", "pcm16": audio}]},
             "cannot tell where it was said"),
        ]:
            with self.assertRaises(ValueError) as cm:
                load_heard(self.write(document))
            self.assertIn(expected, str(cm.exception), document)
        with self.assertRaises(ValueError) as cm:
            load_heard("/nonexistent/heard.json")
        self.assertIn("cannot read the heard table", str(cm.exception))

    def test_the_command_line_refuses_a_bad_table_and_heard_without_scripted(self) -> None:
        good = self.write(heard_document([("first", pcm16_to_ulaw(FIRST.tobytes()))]))
        for argv in (["--heard", good], ["--scripted", "--heard", self.write({"phrases": []})]):
            with self.assertRaises(SystemExit) as cm:
                main(["--listen", "127.0.0.1:0", *argv])
            self.assertEqual(cm.exception.code, 2)


class HeardServerTests(SynchronousTestCase):
    """Through the asyncio server and the real client: mu-law on the wire, decoded as Google's is."""

    def test_finals_over_grpc_say_what_was_said(self) -> None:
        emulator = Emulator(scripted=ScriptedPlan(SCRIPT, final_delay_ms=300, heard=HALVES))
        emulator.start()
        self.addCleanup(emulator.stop)
        channel = grpc.insecure_channel(emulator.address)
        self.addCleanup(channel.close)
        client = speech.SpeechClient(transport=SpeechGrpcTransport(channel=channel))
        ulaw = on_the_line(quiet(0.2), FIRST, quiet(0.7), SECOND, quiet(0.5), speech_like(0.5, seed=7), quiet(0.5))
        responses = list(client.streaming_recognize(streaming_config(interim_results=True),
                                                    audio_requests(ulaw, 160), retry=None, timeout=TIMEOUT))
        self.assertEqual(finals(responses), ["what's the username and", "password?", SCRIPT])
        # 0.7 s into each utterance: the words said by then.
        self.assertEqual(interims(responses), ["what's the username", "password?", SCRIPT])
