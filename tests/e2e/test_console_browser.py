"""The web console in a real browser: headless Chromium with a fake microphone asks
"What time do you open?" through /console/phone, as a person would.

The page speaks Twilio Media Streams to /media (the real call path), so this checks
the softphone (capture, 8 kHz mu-law, playback with marks), the per-call event
stream, the media token and /console/calls in one call. Screenshots of both pages
go to test-artifacts/console/ (or $TEST_ARTIFACTS_DIR). A second call, to a he-IL
daemon whose script speaks Hebrew, checks that each line reads in its own direction
(phone-hebrew.png, calls-hebrew.png). Without Chromium the tests are
skipped with a message saying how to install it; CI installs it (.ci/run).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import wave

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from tests.e2e.chromium import INSTALL_HINT, Chromium, find_chromium
from tests.e2e.daemon import REPO, Daemon, EmulatorProcess, logged
from voiced.audio import resample_pcm16, ulaw_to_pcm16
from voiced.tts.local import EspeakSynthesizer

QUESTION = "What time do you open?"
MIC_RATE = 48000
# The greeting plays for about 5 s after the call connects; the caller waits for it,
# asks once, then stays quiet (a fake microphone loops its file).
LEAD_SILENCE_S, TAIL_SILENCE_S = 6.5, 20.0
ANSWER_WITHIN_S = 15.0


def artifacts_dir() -> str:
    path = os.environ.get("TEST_ARTIFACTS_DIR") or os.path.join(REPO, "test-artifacts")
    path = os.path.join(path, "console")
    os.makedirs(path, exist_ok=True)
    return path


def write_question_wav(path: str) -> None:
    """The microphone: espeak's question (the project's own voice), 16-bit PCM at 48 kHz."""
    speech = resample_pcm16(ulaw_to_pcm16(EspeakSynthesizer("en-US").synthesize_blocking(QUESTION)), 8000, MIC_RATE)
    def silence(s: float) -> bytes:
        return b"\x00\x00" * int(MIC_RATE * s)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(MIC_RATE)
        w.writeframes(silence(LEAD_SILENCE_S) + speech + silence(TAIL_SILENCE_S))


def open_browser(test: TestCase, artifacts: str) -> Chromium:
    """Headless Chromium whose microphone asks QUESTION, stopped when ``test`` ends."""
    wav = os.path.join(artifacts, "microphone.wav")
    write_question_wav(wav)
    browser = Chromium(reactor, wav, artifacts)
    test.addCleanup(browser.stop)
    return browser


class ConsoleBrowserTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        if find_chromium() is None:
            raise SkipTest(INSTALL_HINT)
        self.artifacts = artifacts_dir()
        self.daemon = Daemon()
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()
        self.browser = open_browser(self, self.artifacts)

    def page_state(self) -> str:
        return ("JSON.stringify({state: document.getElementById('call-state')?.textContent,"
                " lines: [...document.querySelectorAll('#transcript [data-role]')].map(e => [e.dataset.role,"
                " e.querySelector('.text').textContent]), stats: window.voicedPhone && window.voicedPhone.stats(),"
                " error: document.getElementById('error')?.textContent})")

    @inlineCallbacks
    def test_a_browser_call_asks_the_opening_hours(self):
        base = f"http://127.0.0.1:{self.daemon.port}"
        yield self.browser.connect()
        yield self.browser.navigate(f"{base}/console/phone?autocall=1")
        connected = yield self.browser.wait_for("document.getElementById('call-state').textContent === 'in-call'", 15)
        state = json.loads((yield self.browser.evaluate(self.page_state())))
        self.assertTrue(connected, f"the call did not connect: {state}\n{self.browser.console_messages()}")
        call_sid = state["stats"]["callSid"]
        started = reactor.seconds()

        answer = yield self.browser.wait_for(
            "[...document.querySelectorAll('#transcript [data-role=\"bot\"]')]"
            ".map(e => e.textContent).find(t => t.includes('8 AM')) || ''", ANSWER_WITHIN_S + 10)
        waited = reactor.seconds() - started
        yield self.browser.screenshot("phone.png")
        state = json.loads((yield self.browser.evaluate(self.page_state())))
        self.assertTrue(answer, f"no opening-hours answer on the page: {state}\n{self.browser.console_messages()}\n"
                                f"{self.daemon.log()[-3000:]}")
        self.assertLess(waited, ANSWER_WITHIN_S, f"the answer took {waited:.1f} s")
        self.assertIn("Monday to Friday from 8 AM to 6 PM", answer)
        caller = [text for role, text in state["lines"] if role == "caller"]
        self.assertTrue(any("open" in text.lower() for text in caller), state["lines"])

        turns = yield logged(self.daemon, f" TURN call={call_sid} ", 1)  # logged as the answer starts playing
        self.assertTrue(turns, f"no TURN line for {call_sid}")
        self.assertRegex(turns[0], r"TOTAL_LATENCY_MS=\d+")

        # The player received reply audio and played it: the greeting's marks came back.
        played = yield self.browser.wait_for(
            "(() => { const s = window.voicedPhone.stats(); return s.player && s.player.playedSeconds > 2"
            " && s.player.marksEchoed > 0 && s.player.peak > 0.05 ? s.player : null })()", 10)
        self.assertTrue(played, f"the page played no reply audio: {state['stats']}")
        self.assertGreater(state["stats"]["framesSent"], 100)  # 20 ms frames from the microphone

        # The turn's metrics reached the page, with its latency chart.
        chart = yield self.browser.wait_for("document.querySelectorAll('#chart svg rect').length", 5)
        self.assertTrue(chart, "no latency chart on the phone page")

        # Once the answer has played whole (its end mark came back), hang up like a caller.
        finished = yield self.browser.wait_for(
            "!!document.querySelector('#transcript [data-role=\"bot\"][data-final]:not([data-interrupted])"
            ":not(:first-child)')", 15)
        self.assertTrue(finished, "the answer never finished playing")
        with open(os.path.join(self.artifacts, "result.json"), "w") as f:
            json.dump({"call_sid": call_sid, "answer_shown_after_s": round(waited, 2), "answer": answer,
                       "turn_line": turns[0], "page": (yield self.browser.evaluate("window.voicedPhone.stats()"))},
                      f, indent=2)
        yield self.browser.evaluate("document.getElementById('hangup').click()")
        ended = yield self.browser.wait_for("document.getElementById('call-state').textContent === 'ended'", 10)
        self.assertTrue(ended)

        yield self.browser.navigate(f"{base}/console/calls?call={call_sid}")
        listed = yield self.browser.wait_for(f"!!document.querySelector('tr[data-call-sid=\"{call_sid}\"]')", 10)
        self.assertTrue(listed, f"/console/calls does not list {call_sid}")
        shown = yield self.browser.wait_for(
            "document.querySelector('#transcript [data-role=\"bot\"]') &&"
            " document.querySelectorAll('#chart svg rect').length", 10)
        yield self.browser.screenshot("calls.png")
        self.assertTrue(shown, "the call's transcript and chart are not shown on /console/calls")
        status, body = self.daemon.get("/console/api/calls")
        self.assertEqual(status, 200)
        self.assertIn(call_sid, [c["call_sid"] for c in json.loads(body)["recent"]])
        self.assertFalse(re.search(r"MEDIA_REJECTED", self.daemon.log()))


# A he-IL daemon whose script speaks Hebrew. The local Whisper (tiny.en) still hears the
# caller in English, so the fallback mixes the two: the page must keep both in order.
HEBREW_GREETING = "שלום, הגעתם למרפאה. במה אפשר לעזור?"
HEBREW_DIALOG = f"""[greeting]
say = {HEBREW_GREETING}

[reprompt]
say = סליחה, לא שמעתי. אפשר לחזור על זה?

[fallback]
say = שמעתי: {{text}}. תודה!
"""
# Each line's words: their text, the attributes the page gave them, and the direction
# the browser resolved from dir="auto".
LINES_JS = ("JSON.stringify([...document.querySelectorAll('#transcript [data-role]')].map(e => {"
            " const t = e.querySelector('.text'); return {role: e.dataset.role, text: t.textContent,"
            " dir: t.getAttribute('dir'), lang: t.getAttribute('lang'), direction: getComputedStyle(t).direction}; }))")


def glyphs_js(prefix: str) -> str:
    """Where the first letter and the last mark of the bot line starting with ``prefix``
    are drawn: in a right-to-left line the last mark ("?", "!") is the leftmost glyph and
    the first letter sits at the line's right edge."""
    return ("(() => { const t = [...document.querySelectorAll('#transcript [data-role=\"bot\"] .text')]"
            f".find(e => e.textContent.startsWith({json.dumps(prefix)})); if (!t) return null;"
            " const text = t.firstChild, r = document.createRange(), box = t.getBoundingClientRect();"
            " r.setStart(text, 0); r.setEnd(text, 1); const first = r.getBoundingClientRect();"
            " r.setStart(text, text.length - 1); r.setEnd(text, text.length); const last = r.getBoundingClientRect();"
            " return JSON.stringify({text: t.textContent, first: [first.left, first.right],"
            " last: [last.left, last.right], box: [box.left, box.right]}); })()")


class ConsoleHebrewBrowserTests(TestCase):
    """A Hebrew call in the console: every line carries dir="auto" and the call's
    language, so its punctuation ends up at the line's left end, where Hebrew ends."""

    timeout = 180

    def setUp(self) -> None:
        if find_chromium() is None:
            raise SkipTest(INSTALL_HINT)
        self.artifacts = artifacts_dir()
        dialog = tempfile.NamedTemporaryFile("w", suffix=".dialog", encoding="utf-8", delete=False)
        self.addCleanup(os.unlink, dialog.name)
        with dialog:
            dialog.write(HEBREW_DIALOG)
        # The bundled Whisper refuses Hebrew (it knows English only), so the emulator's scripted
        # mode is the caller's ears: it hears speech by its energy and says what was scripted,
        # here an English question on a Hebrew line (a left-to-right line among right-to-left ones).
        emulator = EmulatorProcess("--scripted", f"--transcript=he-IL={QUESTION}")
        self.addCleanup(emulator.kill)
        self.daemon = Daemon(env=emulator.google_env(VOICED_LANGUAGE="he-IL", VOICED_SCRIPT=dialog.name))
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()
        self.browser = open_browser(self, self.artifacts)

    @inlineCallbacks
    def lines(self):
        return json.loads((yield self.browser.evaluate(LINES_JS)))

    @inlineCallbacks
    def assert_right_to_left(self, page: str, prefix: str):
        glyphs = json.loads((yield self.browser.evaluate(glyphs_js(prefix))) or "null")
        self.assertTrue(glyphs, f"{page}: no bot line starts with {prefix!r}")
        self.assertLess(glyphs["last"][1], glyphs["first"][0], f"{page}: the last mark is not left of the text: "
                                                                f"{glyphs}")
        self.assertLess(glyphs["box"][1] - glyphs["first"][1], 2, f"{page}: the line does not start at the right: "
                                                                    f"{glyphs}")

    @inlineCallbacks
    def assert_marked_up(self, page: str, with_greeting: bool):
        """Every line carries dir="auto" and lang="he-IL", the Hebrew ones read right to
        left with their text intact, and the caller's English line stays left to right."""
        lines = yield self.lines()
        self.assertTrue(lines, f"no transcript on {page}")
        for line in lines:
            self.assertEqual((line["dir"], line["lang"]), ("auto", "he-IL"), f"{page}: {line}")
        bot = [line for line in lines if line["role"] == "bot"]
        if with_greeting:  # the record keeps turns only: the greeting is on the live page alone
            self.assertEqual((bot[0]["text"], bot[0]["direction"]), (HEBREW_GREETING, "rtl"), f"{page}: {lines}")
            yield self.assert_right_to_left(page, HEBREW_GREETING)
        fallback = bot[-1]
        self.assertTrue(fallback["text"].startswith("שמעתי: ") and fallback["text"].endswith(". תודה!"),
                        f"{page}: {lines}")
        self.assertEqual(fallback["direction"], "rtl", f"{page}: {lines}")
        yield self.assert_right_to_left(page, "שמעתי: ")
        caller = [line for line in lines if line["role"] == "caller"]
        self.assertTrue(caller and "open" in caller[0]["text"].lower(), f"{page}: {lines}")
        self.assertEqual(caller[0]["direction"], "ltr", f"{page}: {lines}")
        return lines

    @inlineCallbacks
    def test_a_hebrew_call_reads_right_to_left(self):
        base = f"http://127.0.0.1:{self.daemon.port}"
        yield self.browser.connect()
        yield self.browser.navigate(f"{base}/console/phone?autocall=1")
        connected = yield self.browser.wait_for("document.getElementById('call-state').textContent === 'in-call'", 15)
        self.assertTrue(connected, f"the call did not connect: {self.browser.console_messages()}")
        call_sid = yield self.browser.evaluate("window.voicedPhone.stats().callSid")

        # The greeting, the caller's question (in English), and the Hebrew fallback played whole.
        answered = yield self.browser.wait_for(
            "!!document.querySelector('#transcript [data-role=\"bot\"][data-final]:not(:first-child)')",
            ANSWER_WITHIN_S + 15)
        yield self.browser.screenshot("phone-hebrew.png")
        self.assertTrue(answered, f"no Hebrew answer on the page: {(yield self.lines())}\n"
                                  f"{self.browser.console_messages()}\n{self.daemon.log()[-3000:]}")
        yield self.assert_marked_up("/console/phone", with_greeting=True)
        yield self.browser.evaluate("document.getElementById('hangup').click()")
        ended = yield self.browser.wait_for("document.getElementById('call-state').textContent === 'ended'", 10)
        self.assertTrue(ended)

        yield self.browser.navigate(f"{base}/console/calls?call={call_sid}")
        shown = yield self.browser.wait_for(
            "!!document.querySelector('#transcript [data-role=\"bot\"]')", 10)
        yield self.browser.screenshot("calls-hebrew.png")
        self.assertTrue(shown, f"the call's transcript is not shown on /console/calls: {(yield self.lines())}")
        lines = yield self.assert_marked_up("/console/calls", with_greeting=False)
        with open(os.path.join(self.artifacts, "hebrew-lines.json"), "w", encoding="utf-8") as f:
            json.dump({"call_sid": call_sid, "lines": lines}, f, indent=2, ensure_ascii=False)


class ConsoleLoginBrowserTests(TestCase):
    """With VOICED_CONSOLE_TOKEN a browser meets the login form, and its cookie then
    opens the pages and mints the softphone's media token."""

    timeout = 120

    def setUp(self) -> None:
        if find_chromium() is None:
            raise SkipTest(INSTALL_HINT)
        self.artifacts = artifacts_dir()
        self.daemon = Daemon(env={"VOICED_CONSOLE_TOKEN": "browser-token"})
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()
        wav = os.path.join(self.artifacts, "silence.wav")
        with wave.open(wav, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(MIC_RATE)
            w.writeframes(b"\x00\x00" * MIC_RATE)
        self.browser = Chromium(reactor, wav, self.artifacts)
        self.addCleanup(self.browser.stop)

    @inlineCallbacks
    def test_login_form_then_the_console(self):
        yield self.browser.connect()
        yield self.browser.navigate(f"http://127.0.0.1:{self.daemon.port}/console/calls")
        form = yield self.browser.wait_for("!!document.querySelector('input[name=token]')", 10)
        self.assertTrue(form, "no login form")
        yield self.browser.screenshot("login.png")
        yield self.browser.evaluate("document.querySelector('input[name=token]').value = 'wrong';"
                                    " document.querySelector('form').submit()")
        refused = yield self.browser.wait_for("document.body.textContent.includes('Wrong token')", 10)
        self.assertTrue(refused)
        yield self.browser.evaluate("document.querySelector('input[name=token]').value = 'browser-token';"
                                    " document.querySelector('form').submit()")
        listed = yield self.browser.wait_for("location.pathname === '/console/calls' && !!document.getElementById('live')"
                                             " && document.getElementById('recent-count').textContent", 10)
        self.assertTrue(listed, "the calls page did not open after the login")
        status = yield self.browser.evaluate(
            "fetch('/console/api/media-token', {method: 'POST'}).then(r => r.status)")
        self.assertEqual(status, 200)
