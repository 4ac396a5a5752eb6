"""The emulator honours a stream's language_code: scripted Hebrew transcripts, the
language echoed in results, a language the Whisper model lacks refused at the start.

Driven by the real google-cloud-speech client over gRPC on loopback, as in
tests/test_emulator.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import grpc
from google.api_core import exceptions
from google.cloud import speech
from google.cloud.speech_v1.services.speech.transports import SpeechGrpcTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.emulator import ROOT, TIMEOUT, audio_requests, finals, interims, streaming_config, utterance
from voiced.audio import pcm16_to_ulaw, silence_ulaw, ulaw_to_pcm16
from voiced.emulator.main import main
from voiced.emulator.scripted import DEFAULT_TRANSCRIPT, EnergySession, ScriptedPlan, parse_transcripts
from voiced.emulator.server import Emulator
from voiced.lifecycle import construction_counts

HEBREW = ("שלום", "מתי אתם פותחים?", "תודה, להתראות")
#: One second of a loud square wave, 8 kHz mu-law: speech to the scripted mode's energy rule.
LOUD = pcm16_to_ulaw(((3000).to_bytes(2, "little", signed=True) * 10
                      + (-3000).to_bytes(2, "little", signed=True) * 10) * 400)  # fmt: skip


def utterances(n: int) -> bytes:
    """``n`` utterances of the loud wave, each followed by 500 ms of silence (past the final delay)."""
    return (LOUD + silence_ulaw(500)) * n


def speech_client(address: str, test: SynchronousTestCase) -> speech.SpeechClient:
    channel = grpc.insecure_channel(address)
    test.addCleanup(channel.close)
    return speech.SpeechClient(transport=SpeechGrpcTransport(channel=channel))


def recognize(
    client: speech.SpeechClient, audio: bytes, config: speech.StreamingRecognitionConfig
) -> list[speech.StreamingRecognizeResponse]:
    return list(client.streaming_recognize(config, audio_requests(audio), retry=None, timeout=TIMEOUT))


def result_languages(responses: list[speech.StreamingRecognizeResponse]) -> set[str]:
    return {r.results[0].language_code for r in responses if r.results}


class ScriptTests(SynchronousTestCase):
    """The plan's scripts, and the session that follows one: no server."""

    def test_utterances_follow_the_script_and_the_last_line_repeats(self) -> None:
        session = EnergySession(ScriptedPlan(by_language={"he-IL": HEBREW}), language_code="he-IL")
        texts = [o.text for o in session.feed(ulaw_to_pcm16(utterances(4))) if o.is_final]
        self.assertEqual(texts, [*HEBREW, HEBREW[-1]])

    def test_a_language_gets_its_script_then_its_primary_subtag_then_every_streams(self) -> None:
        plan = ScriptedPlan(("one", "two"), by_language={"he-IL": HEBREW, "fr": "oui"})
        self.assertEqual(plan.script_for("HE-il"), HEBREW)
        self.assertEqual(plan.script_for("fr-CA"), ("oui",))
        self.assertEqual(plan.script_for("en-US"), ("one", "two"))
        self.assertEqual(ScriptedPlan().script_for("he-IL"), (DEFAULT_TRANSCRIPT,))

    def test_bad_scripts_are_refused(self) -> None:
        for bad in (dict(transcript=()), dict(transcript=("ok", " ")), dict(by_language={"he-IL": ""}),
                    dict(by_language={"not a language": "x"})):  # fmt: skip
            with self.assertRaises(ValueError):
                ScriptedPlan(**bad)  # type: ignore[arg-type]

    def test_command_line_values(self) -> None:
        every, by_language = parse_transcripts(["he-IL=שלום", "Hello", "he-il=תודה", "he=כן", "two words=x"])
        self.assertEqual(every, ("Hello", "two words=x"))
        self.assertEqual(by_language, {"he-il": ("שלום", "תודה"), "he": ("כן",)})
        self.assertEqual(parse_transcripts(["he-IL=שלום"]), ((DEFAULT_TRANSCRIPT,), {"he-il": ("שלום",)}))


class ScriptedHebrewTests(SynchronousTestCase):
    """The scripted mode (the asyncio server) speaking Hebrew."""

    def setUp(self) -> None:
        plan = ScriptedPlan(("first", "second"), final_delay_ms=300, by_language={"he-IL": HEBREW})
        self.emulator = Emulator(scripted=plan)
        self.emulator.start()
        self.addCleanup(self.emulator.stop)
        self.speech = speech_client(self.emulator.address, self)

    def test_three_hebrew_sentences_in_order_over_one_stream(self) -> None:
        config = streaming_config(language="he-IL", model="default", interim_results=True)
        responses = recognize(self.speech, utterances(4), config)
        self.assertEqual(finals(responses), [*HEBREW, HEBREW[-1]])
        # Each utterance's partials are its own line's text.
        self.assertEqual(sorted(set(interims(responses)), key=HEBREW.index), list(HEBREW))
        self.assertEqual(result_languages(responses), {"he-il"})
        self.assertEqual(self.emulator.stats.streams_completed, 1)

    def test_each_stream_starts_its_script_over_and_other_languages_get_theirs(self) -> None:
        config = streaming_config(language="he-IL", model="latest_long", interim_results=False)
        self.assertEqual(finals(recognize(self.speech, utterances(1), config)), [HEBREW[0]])
        self.assertEqual(finals(recognize(self.speech, utterances(2), config)), list(HEBREW[:2]))
        english = recognize(self.speech, utterances(3), streaming_config(language="en-GB"))
        self.assertEqual(finals(english), ["first", "second", "second"])
        self.assertEqual(result_languages(english), {"en-gb"})

    def test_models_for_hebrew_as_google_has_them(self) -> None:
        # Google v1: default and command_and_search serve every language; phone_call not Hebrew.
        for model in ("default", "latest_long", "latest_short", "command_and_search"):
            config = streaming_config(language="he-IL", model=model, interim_results=False)
            self.assertEqual(finals(recognize(self.speech, utterances(1), config)), [HEBREW[0]], model)
        with self.assertRaises(exceptions.InvalidArgument) as cm:
            recognize(self.speech, utterances(1), streaming_config(language="he-IL", model="phone_call"))
        self.assertEqual(cm.exception.message, "The requested model is currently not supported for language : he-IL.")
        self.assertEqual((self.emulator.stats.streams_completed, self.emulator.stats.streams_failed), (4, 1))


class HebrewRecognizer:
    """The emulator's Recognizer seam, for a model that knows English and Hebrew only."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def supports_language(self, language_code: str) -> bool:
        return language_code.split("-")[0].lower() in ("en", "he")

    def transcribe(self, ulaw: bytes, language_code: str) -> str:
        self.calls.append(language_code)
        return HEBREW[0] if language_code.startswith("he") else "hello"


class ModelLanguageTests(SynchronousTestCase):
    """With a model (the thread server), the stream's language reaches the recognizer."""

    def start(self, recognizer: HebrewRecognizer | None = None) -> Emulator:
        emulator = Emulator(recognizer=recognizer)
        emulator.start()
        self.addCleanup(emulator.stop)
        self.speech = speech_client(emulator.address, self)
        return emulator

    def test_the_language_reaches_the_recognizer_and_comes_back_in_results(self) -> None:
        recognizer = HebrewRecognizer()
        self.start(recognizer)
        responses = recognize(self.speech, utterance(), streaming_config(language="he-IL", model="default"))
        self.assertEqual(finals(responses), [HEBREW[0]])
        self.assertEqual(set(recognizer.calls), {"he-IL"})
        self.assertEqual(result_languages(responses), {"he-il"})

    def test_a_language_the_model_lacks_is_refused_at_the_start(self) -> None:
        recognizer = HebrewRecognizer()
        emulator = self.start(recognizer)
        with self.assertRaises(exceptions.InvalidArgument) as cm:
            recognize(self.speech, utterance(), streaming_config(language="fr-FR", model="default"))
        self.assertIn("not supported for language : fr-FR", cm.exception.message)
        self.assertEqual(recognizer.calls, [])  # refused before any audio was recognized
        self.assertEqual(emulator.stats.streams_failed, 1)

    def test_the_english_only_whisper_refuses_hebrew_and_keeps_one_model_for_english(self) -> None:
        before = construction_counts().get("stt_whisper_model", 0)
        emulator = self.start()  # the default recognizer: the bundled Whisper tiny.en
        with self.assertRaises(exceptions.InvalidArgument) as cm:
            recognize(self.speech, utterance(), streaming_config(language="he-IL", model="default"))
        self.assertIn("The requested model is currently not supported for language : he-IL.", cm.exception.message)
        self.assertIn("English only", cm.exception.message)
        self.assertIn("--whisper-model", cm.exception.message)
        # English still works, on the model loaded to find that out.
        responses = recognize(self.speech, utterance(), streaming_config(language="en-US", interim_results=False))
        self.assertIn("open", finals(responses)[0].lower())
        self.assertEqual(construction_counts().get("stt_whisper_model", 0), before + 1)
        self.assertEqual((emulator.stats.streams_failed, emulator.stats.streams_completed), (1, 1))


class CommandLineTests(SynchronousTestCase):
    def test_transcript_needs_scripted_and_a_text(self) -> None:
        for argv in (["--transcript", "hello"], ["--scripted", "--transcript", "he-IL="]):
            with self.assertRaises(SystemExit) as cm:
                main(["--listen", "127.0.0.1:0", *argv])
            self.assertEqual(cm.exception.code, 2)

    def test_scripted_hebrew_transcripts_from_the_command_line(self) -> None:
        args = ["--scripted", "--listen", "127.0.0.1:0"]
        for text in HEBREW:
            args += ["--transcript", f"he-IL={text}"]
        proc = subprocess.Popen([sys.executable, "-m", "voiced.emulator.main", *args], stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)  # fmt: skip
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        assert proc.stderr is not None
        self.addCleanup(proc.stderr.close)
        listening = re.search(r"listening on 127\.0\.0\.1:(\d+)", proc.stderr.readline())
        assert listening is not None
        port = int(listening.group(1))
        client = speech_client(f"127.0.0.1:{port}", self)
        config = streaming_config(language="he-IL", model="default", interim_results=False)
        self.assertEqual(finals(recognize(client, utterances(3), config)), list(HEBREW))
        self.assertEqual(finals(recognize(client, utterances(1), streaming_config())), [DEFAULT_TRANSCRIPT])
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=10), 0)
