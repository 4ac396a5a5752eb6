"""voiced-call --language: the bot's replies are transcribed in the call's language, or
said once to be untranscribable (a model without the language), never English nonsense."""

from __future__ import annotations

import functools
import json
import os
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.testing.caller import REPO, serve_scripted_bot
from voiced.audio import silence_ulaw
from voiced.caller.main import build_parser, transcribe_all
from voiced.caller.report import BotReply, CallReport, format_conversation, report_dict, transcribe_calls
from voiced.tts.local import EspeakSynthesizer

HEBREW_GREETING = "שלום, במה אפשר לעזור?"


@functools.cache
def spoken(language: str, text: str) -> bytes:
    return silence_ulaw(200) + EspeakSynthesizer(language).synthesize_blocking(text) + silence_ulaw(300)


def call_with_replies(*replies: bytes) -> CallReport:
    report = CallReport("CA" + "1" * 32, "MZ" + "2" * 32, "ws://127.0.0.1:1/media", connected=True)
    start = 0.0
    for audio in replies:
        end = start + len(audio) / 8000
        report.replies.append(BotReply(start, start, start, end, audio, interrupted=False))
        start = end + 1.0
    return report


class RecordingTranscriber:
    """A BlockingTranscriber for a model that knows the language it was made for, or not."""

    def __init__(self, serves_language: bool, text: str = "בסדר") -> None:
        self.serves_language = serves_language
        self.text = text
        self.heard: list[int] = []

    def transcribe_blocking(self, ulaw: bytes) -> str:
        self.heard.append(len(ulaw))
        return self.text


class TranscribeCallsTests(SynchronousTestCase):
    def test_a_model_with_the_language_transcribes_every_reply_and_says_which_language(self) -> None:
        reports = [call_with_replies(b"\x10" * 800, b"\xff" * 800), call_with_replies(b"\x20" * 1600)]
        transcriber = RecordingTranscriber(True)
        self.assertIsNone(transcribe_calls(reports, transcriber, "he-IL"))
        self.assertEqual(transcriber.heard, [800, 1600])  # silence is not worth the model
        self.assertEqual([r.text for r in reports[0].replies + reports[1].replies], ["בסדר", "", "בסדר"])
        self.assertEqual(report_dict(reports[0])["transcript_language"], "he-IL")
        self.assertIsNone(report_dict(reports[0])["not_transcribed"])

    def test_a_model_without_the_language_transcribes_nothing_and_says_so_once(self) -> None:
        reports = [call_with_replies(b"\x10" * 8000), call_with_replies(b"\x10" * 8000)]
        transcriber = RecordingTranscriber(False, text="Shalom, be-ma efshar?")
        note = transcribe_calls(reports, transcriber, "he-IL", "the bundled Whisper model (tiny.en: English only)")
        self.assertEqual(transcriber.heard, [])
        assert note is not None
        self.assertIn("the bundled Whisper model (tiny.en: English only) does not know he-IL", note)
        self.assertIn("not transcribed", note)
        for report in reports:
            self.assertEqual(report.replies[0].text, "")
            as_json = report_dict(report)
            self.assertEqual((as_json["transcript_language"], as_json["replies"][0]["text"]), (None, ""))
            self.assertEqual(as_json["not_transcribed"], "the Whisper model does not know he-IL")
            self.assertIn("[bot]    (1.0 s of audio, not transcribed: the Whisper model does not know he-IL)",
                          format_conversation(report))  # fmt: skip

    def test_the_language_option_defaults_to_english(self) -> None:
        self.assertEqual(build_parser().parse_args([]).language, "en-US")
        self.assertEqual(build_parser().parse_args(["--language", "he-IL"]).language, "he-IL")


class BundledWhisperTests(SynchronousTestCase):
    """transcribe_all on the bundled Whisper (tiny.en), made for the call's language."""

    def test_hebrew_replies_are_not_turned_into_english(self) -> None:
        reports = [call_with_replies(spoken("he-IL", HEBREW_GREETING))]
        note = transcribe_all(reports, "", "he-IL")
        assert note is not None
        self.assertIn("does not know he-IL", note)
        self.assertIn("English only", note)
        self.assertEqual((reports[0].replies[0].text, reports[0].transcript_language), ("", None))

    def test_english_replies_are_transcribed_in_any_english(self) -> None:
        reports = [call_with_replies(spoken("en-US", "What time do you open?"))]
        self.assertIsNone(transcribe_all(reports, "", "en-GB"))
        self.assertIn("open", reports[0].replies[0].text.lower())
        self.assertEqual(reports[0].transcript_language, "en-GB")


class HebrewCallTests(TestCase):
    timeout = 60

    def serve(self, greeting: bytes, replies: tuple[bytes, ...]) -> str:
        self.factory, url = serve_scripted_bot(self, greeting, replies, hang_up_after=1)
        return url

    @inlineCallbacks
    def test_cli_says_once_that_hebrew_replies_are_not_transcribed_by_an_english_model(self):
        reply = spoken("he-IL", "אנחנו פותחים בתשע")
        url = self.serve(spoken("he-IL", HEBREW_GREETING), (reply,))
        args = ["-m", "voiced.caller.main", url, "--language", "he-IL", "--say", "מתי אתם פותחים?", "--calls", "2",
                "--pause-ms", "200", "--json"]  # fmt: skip
        stdout, stderr, code = yield getProcessOutputAndValue(sys.executable, args, env=dict(os.environ), path=REPO)
        self.assertEqual(code, 0, stderr)
        self.assertEqual(stderr.decode().count("does not know he-IL"), 1, stderr)
        result = json.loads(stdout)
        for call in result["calls"]:
            self.assertEqual(call["turns"][0]["line_text"], "מתי אתם פותחים?")
            self.assertEqual([r["text"] for r in call["replies"]], ["", ""])
            self.assertEqual(call["not_transcribed"], "the Whisper model does not know he-IL")
            self.assertIsNone(call["transcript_language"])
        for bot in self.factory.bots:
            yield bot.closed
