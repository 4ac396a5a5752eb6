"""Issue 11: operating voiced. Start-up checks, log reopening on signals, listen errors,
the admin port, warm-up retries and the /health bound, and the small things (flags)."""

import os
import signal
import socket
import tempfile

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from voiced import preflight
from voiced.config import ConfigError, Settings
from voiced.options import unknown_env_warnings
from voiced.listener import Listener
from voiced.logging import make_observer
from voiced.retry import Backoff
from voiced.service import VoicedService
from voiced.signals import SignalHandlers
from voiced.tap import Options, daemon_log_file


def settings(**env):
    return Settings.load({}, env)


class ConfigurationErrorTests(SynchronousTestCase):
    """Item 1: what retrying cannot fix is found before start-up, with a one-line reason."""

    def check(self, environ=None, **env):
        return preflight.check(settings(**env), environ if environ is not None else env)

    def test_google_without_credentials(self):
        e = self.assertRaises(ConfigError, self.check, environ={}, VOICED_STT="google")
        self.assertIn("no Google credentials", str(e))
        self.assertNotIn("\n", str(e))

    def test_endpoint_without_insecure_hints_at_the_other_setting(self):
        e = self.assertRaises(ConfigError, self.check, environ={}, VOICED_GOOGLE_ENDPOINT="127.0.0.1:50051")
        self.assertIn("VOICED_GOOGLE_INSECURE=1", str(e))

    def test_unreadable_key_file(self):
        e = self.assertRaises(ConfigError, self.check, environ={"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent.json"},
                              VOICED_STT="google")
        self.assertIn("cannot read /nonexistent.json", str(e))

    def test_plaintext_to_a_remote_host(self):
        e = self.assertRaises(ConfigError, self.check, VOICED_GOOGLE_ENDPOINT="10.1.2.3:443", VOICED_GOOGLE_INSECURE="1")
        self.assertIn("non-loopback", str(e))

    def test_emulator_with_insecure_passes(self):
        self.assertEqual(self.check(VOICED_GOOGLE_ENDPOINT="127.0.0.1:50051", VOICED_GOOGLE_INSECURE="1"), [])

    def test_unreadable_system_prompt_file(self):
        e = self.assertRaises(ConfigError, self.check, VOICED_AGENT="openai", VOICED_SYSTEM_PROMPT_FILE="/nope.txt")
        self.assertIn("VOICED_SYSTEM_PROMPT_FILE: cannot read /nope.txt", str(e))

    def test_webhook_agent_without_url(self):
        self.assertRaises(ConfigError, settings, VOICED_AGENT="webhook")

    def test_language_must_be_a_bcp47_tag(self):
        e = self.assertRaises(ConfigError, settings, VOICED_LANGUAGE="english")
        self.assertIn("BCP-47", str(e))
        for tag in ("en-US", "he-IL", "es-419", "zh-Hant-TW", "fr"):
            self.assertEqual(settings(VOICED_LANGUAGE=tag).language, tag)


class ListenErrorTests(SynchronousTestCase):
    """Item 3: a bad --listen is one line naming the option, the value and what is wrong."""

    def assertListenError(self, endpoint, *words):
        e = self.assertRaises(ConfigError, preflight.check_listen, "--listen", endpoint)
        for word in ("--listen", endpoint, *words):
            self.assertIn(word, str(e))

    def test_port_not_a_number(self):
        self.assertListenError("tcp:notaport", "the port must be a number")

    def test_unknown_endpoint_type(self):
        self.assertListenError("foo:1", "unknown endpoint type")

    def test_missing_ssl_key(self):
        self.assertListenError("ssl:8443:privateKey=/nope.pem", "cannot read /nope.pem")

    def test_port_in_use(self):
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        self.assertListenError(f"tcp:{port}:interface=127.0.0.1", f"port {port} on 127.0.0.1 is already in use")

    def test_listener_failing_after_the_fork_raises_a_short_whole_message(self):
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory

        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listener = Listener("--listen", f"tcp:{port}:interface=127.0.0.1", Factory(), reactor)
        e = self.assertRaises(RuntimeError, listener.privilegedStartService)
        self.assertIn("already in use", str(e))
        self.assertLessEqual(len(f"1 RuntimeError: {e}"), 100, "twistd relays 100 bytes to the terminal")


class EnvironmentTypoTests(SynchronousTestCase):
    """Item 4: an unknown VOICED_* variable is a warning naming the closest known one."""

    def test_closest_known_name(self):
        (warning,) = unknown_env_warnings({"VOICED_EOU_SILENCE": "300", "HOME": "/root", "VOICED_LISTEN": "tcp:1"})
        self.assertIn("VOICED_EOU_SILENCE is not a voiced setting", warning)
        self.assertIn("did you mean VOICED_EOU_SILENCE_MS?", warning)

    def test_warnings_come_back_from_the_checks(self):
        warnings = preflight.check(settings(), {"VOICED_BARGEIN_MS": "100"})
        self.assertEqual(len(warnings), 1)
        self.assertIn("VOICED_BARGE_IN_MS", warnings[0])


class StartupWarningTests(SynchronousTestCase):
    """Items 7 (start-up part) and 9: suspicious but workable settings are warned about."""

    google = {"VOICED_GOOGLE_ENDPOINT": "127.0.0.1:50051", "VOICED_GOOGLE_INSECURE": "1"}

    def test_rollover_at_the_stream_limit(self):
        env = dict(self.google, VOICED_STT_ROLLOVER_S="300")
        (warning,) = preflight.check(settings(**env), env)
        self.assertIn("VOICED_STT_ROLLOVER_S=300", warning)

    def test_hebrew_picks_a_model_google_serves_it_on(self):
        """Issue 18: he-IL with no model chosen streams to one that serves Hebrew, and says nothing."""
        env = dict(self.google, VOICED_LANGUAGE="he-IL")
        self.assertEqual(preflight.check(settings(**env), env), [])
        self.assertEqual(settings(**env).google_stt_model, "default")
        self.assertEqual(settings(**self.google).google_stt_model, "phone_call")  # en-US keeps the phone model
        env["VOICED_STT_MODEL"] = "latest_long"
        self.assertEqual(preflight.check(settings(**env), env), [])

    def test_a_model_google_refuses_for_the_language_is_one_line(self):
        """Issue 18: phone_call + he-IL would leave every call to the fallback: refused at start-up."""
        env = dict(self.google, VOICED_LANGUAGE="he-IL", VOICED_STT_MODEL="phone_call")
        e = self.assertRaises(ConfigError, preflight.check, settings(**env), env)
        self.assertNotIn("\n", str(e))
        self.assertIn("VOICED_STT_MODEL=phone_call with VOICED_LANGUAGE=he-IL: Google's phone_call model does not "
                      "serve he-IL", str(e))
        self.assertIn("leave VOICED_STT_MODEL unset for default", str(e))
        # With local STT the Google model is not used: nothing to refuse.
        env["VOICED_STT"] = "local"
        preflight.check(settings(**env), env)

    def test_a_language_without_a_catalog_or_dialog_is_named_at_start_up(self):
        env = dict(VOICED_LANGUAGE="fr-FR")
        warnings = preflight.check(settings(**env), env)
        self.assertTrue(any("no phrase catalog" in w and "fr-FR" in w for w in warnings), warnings)
        self.assertTrue(any("no built-in dialog" in w for w in warnings), warnings)
        self.assertEqual(preflight.check(settings(VOICED_LANGUAGE="he-IL"), {}), [])

    def test_a_bad_phrase_catalog_is_one_line(self):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("filler = רגע\nhello there\n")
        env = dict(VOICED_PHRASES_FILE=path)
        e = self.assertRaises(ConfigError, preflight.check, settings(**env), env)
        self.assertIn(f"VOICED_PHRASES_FILE: {path}:2: expected 'key = text'", str(e))


class TapTests(SynchronousTestCase):
    def test_config_error_is_one_line_and_exit_1(self):
        e = self.assertRaises(SystemExit, Options().parseOptions, ["--barge-in-ms", "abc"])
        self.assertEqual(str(e.code), "voiced: configuration error: --barge-in-ms: invalid literal for int() "
                                      "with base 10: 'abc'")

    def test_boolean_options_are_flags(self):
        """Item 9: --google-insecure takes no value, so it cannot swallow the next option."""
        options = Options()
        options.parseOptions(["--google-insecure", "--google-endpoint", "127.0.0.1:1"])
        s = options["settings"]
        self.assertEqual((s.google_insecure, s.google_endpoint), (True, "127.0.0.1:1"))

    def test_daemon_logs_to_the_run_directory_from_the_first_line(self):
        class Server(dict):
            pass

        options = Options()
        options.parent = Server(nodaemon=False, rundir="/srv/voiced")
        self.assertEqual(daemon_log_file(options, ""), "/srv/voiced/voiced.log")
        self.assertEqual(daemon_log_file(options, "/var/log/v.log"), "/var/log/v.log")
        options.parent = Server(nodaemon=True, rundir="/srv/voiced")
        self.assertEqual(daemon_log_file(options, ""), "")


class LogReopenTests(SynchronousTestCase):
    """Item 2: SIGUSR1 and SIGHUP reopen the log file (logrotate moved it)."""

    def test_reopen_writes_to_a_new_file_in_order(self):
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "voiced.log")
        observer = make_observer("text", "info", path=path)
        observer({"log_format": "before", "log_level": None, "log_namespace": "t"})
        os.rename(path, path + ".1")
        self.assertTrue(observer.reopen())
        observer({"log_format": "after", "log_level": None, "log_namespace": "t"})
        observer.stop()
        with open(path + ".1") as f:
            self.assertIn("before", f.read())
        with open(path) as f:
            text = f.read()
        self.assertIn("after", text)
        self.assertNotIn("before", text)

    def test_stdout_has_nothing_to_reopen(self):
        self.assertFalse(make_observer("text", "info", stream=open(os.devnull, "w")).reopen())

    def test_signals_hand_the_reopening_to_the_reactor_thread(self):
        scheduled = []

        class Reactor:
            def callFromThread(self, f, *args):
                scheduled.append((f, args))

        handlers = SignalHandlers(Reactor(), lambda name: None)
        self.assertTrue(handlers.install())
        self.addCleanup(handlers.uninstall)
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual([args for _, args in scheduled], [("SIGUSR1",), ("SIGHUP",)])
        handlers.uninstall()
        self.assertEqual(signal.getsignal(signal.SIGHUP), signal.SIG_DFL)


class HealthTests(SynchronousTestCase):
    """Items 1 and 5: warm-up retries, /health's bound, and the admin port."""

    def service(self, **env):
        clock = Clock()
        service = VoicedService(settings(**env), reactor=clock)
        service._started_clock = clock.seconds()
        return clock, service

    def test_transient_warm_up_failures_are_retried_with_503_and_the_reason(self):
        clock, service = self.service()
        failures = [ConnectionError("cannot connect to 127.0.0.1:50051 within 5 s")] * 2

        async def warm_up():
            if failures:
                raise failures.pop()
            service.ready = True

        service._warm_up = warm_up
        warming = service._start_warm_up(Backoff(1, 30, attempts=100))
        ready, body = service.readiness()
        self.assertFalse(ready)
        self.assertIn("retrying: cannot connect to 127.0.0.1:50051", body["reason"])
        clock.advance(1)
        clock.advance(2)
        self.successResultOf(warming)
        self.assertTrue(service.readiness()[0])
        self.assertEqual(service.liveness()["status"], "ok")

    def test_health_turns_unhealthy_after_the_warm_up_bound(self):
        clock, service = self.service(VOICED_WARMUP_TIMEOUT_S="60")
        service.warmup_error = "cannot connect"
        self.assertEqual(service.liveness()["status"], "ok")
        clock.advance(61)
        body = service.liveness()
        self.assertEqual(body["status"], "unhealthy")
        self.assertIn("not ready 60 s after start (last error: cannot connect)", body["reason"])

    def test_a_config_error_in_warm_up_is_final(self):
        clock, service = self.service()

        async def warm_up():
            raise ConfigError("GOOGLE_APPLICATION_CREDENTIALS: cannot read /k.json: Permission denied")

        service._warm_up = warm_up
        service._start_warm_up()
        self.assertEqual(clock.getDelayedCalls(), [], "not retried")
        self.assertEqual(service.liveness()["status"], "unhealthy")

    def test_admin_listen_moves_health_and_metrics(self):
        from voiced.app import build_carriers
        from voiced.console import Console
        from voiced.web import build_admin_site, build_site

        _, service = self.service()
        console = Console(service)
        carriers = build_carriers(service, service.settings, console)
        public = build_site(service, carriers, console, with_admin=False).resource
        admin = build_admin_site(service).resource
        # The web console (on here: loopback, no Twilio token) stays beside /media, never on the admin port.
        # /twilio/status, /telnyx/status, /plivo/status, /vonage/status: the status callbacks of the calls voiced
        # places; /calls, /campaigns: placing them (admin).
        self.assertEqual(set(public.children), {b"media", b"twiml", b"answer", b"console", b"twilio", b"telnyx", b"plivo",
                                               b"vonage"})
        self.assertEqual(set(admin.children), {b"health", b"metrics", b"calls", b"campaigns"})
        self.assertEqual(set(build_site(service, carriers, console).resource.children),
                         {b"media", b"twiml", b"answer", b"health", b"metrics", b"console", b"twilio", b"calls",
                          b"campaigns", b"telnyx", b"plivo", b"vonage"})


class EmulatorBehindTests(SynchronousTestCase):
    """Item 8: the emulator says when its recognizer falls behind real time."""

    def test_logged_once_then_caught_up(self):
        from voiced.emulator.common import EmulatorStats
        from voiced.emulator.server import BehindWatch

        with self.assertLogs("voiced.emulator", "INFO") as logs:
            watch = BehindWatch(7, EmulatorStats())
            for waited in (0.1, 1.5, 2.0, 0.2):
                watch.note(waited)
        self.assertEqual(len([m for m in logs.output if "RECOGNIZER_BEHIND stream=7" in m]), 1)
        self.assertEqual(len([m for m in logs.output if "RECOGNIZER_CAUGHT_UP stream=7" in m]), 1)


class CallerTlsTests(SynchronousTestCase):
    """Item 9: voiced-call --cacert and --insecure for a self-signed wss:// daemon."""

    def test_options(self):
        from twisted.internet import ssl

        from voiced.caller.main import build_parser, tls_options
        from tests.tls import self_signed

        self.assertIsNone(tls_options("wss://voice.example.com/media"))
        self.assertIsInstance(tls_options("wss://localhost:8443/media", insecure=True), ssl.CertificateOptions)
        cert, _key = self_signed(tempfile.mkdtemp())
        self.assertIsNotNone(tls_options("wss://localhost:8443/media", cacert=cert))
        args = build_parser().parse_args(["wss://localhost:8443/media", "--cacert", cert, "--insecure"])
        self.assertEqual((args.cacert, args.insecure), (cert, True))


class JsonFieldNameTests(SynchronousTestCase):
    """Item 9: JSON log fields are named as in the text message."""

    def test_ready_and_stop_lines(self):
        import inspect

        from voiced import service, warmup

        source = inspect.getsource(service) + inspect.getsource(warmup)
        for name in ("tts_warmup_ms={tts_warmup_ms}", "phrases={phrases}", "active_calls={active_calls}"):
            self.assertIn(name, source)
