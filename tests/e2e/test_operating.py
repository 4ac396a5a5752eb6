"""Issue 11 against real twistd processes: configuration errors exit at once with one
line (foreground and daemonized), SIGUSR1 reopens a daemon's moved log file, and
--admin-listen takes health and metrics off the media port."""

import os
import signal
import subprocess
import sys
import tempfile
import time

from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon
from voiced.demo import free_port

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def run_twistd(args, env, rundir):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("VOICED_", "GOOGLE_"))}
    environ.update(env)
    started = time.monotonic()
    done = subprocess.run([TWISTD, *args], env=environ, cwd=rundir, capture_output=True, text=True, timeout=30)
    return done, time.monotonic() - started


class ConfigErrorExitTests(TestCase):
    timeout = 60

    def assertOneLineExit(self, done, elapsed, *words):
        self.assertEqual(done.returncode, 1, done.stderr)
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, lines)
        for word in words:
            self.assertIn(word, lines[0])
        self.assertLess(elapsed, 15)
        return lines[0]

    def test_google_without_credentials_foreground_and_daemonized(self):
        rundir = tempfile.mkdtemp(prefix="voiced-e2e-")
        listen = f"tcp:{free_port()}:interface=127.0.0.1"
        env = {"VOICED_STT": "google", "HOME": rundir}  # no gcloud login either
        done, elapsed = run_twistd(["-n", "--pidfile=", "voiced", "--listen", listen], env, rundir)
        self.assertOneLineExit(done, elapsed, "no Google credentials")
        done, elapsed = run_twistd([f"--rundir={rundir}", "--pidfile=voiced.pid", "voiced", "--listen", listen],
                                   env, rundir)
        line = self.assertOneLineExit(done, elapsed, "no Google credentials")
        with open(os.path.join(rundir, "voiced.log")) as f:
            self.assertIn(line, f.read(), "the daemon's log file has the same line")
        self.assertFalse(os.path.exists(os.path.join(rundir, "voiced.pid")))

    def test_port_in_use_daemonized(self):
        rundir = tempfile.mkdtemp(prefix="voiced-e2e-")
        import socket

        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        done, elapsed = run_twistd([f"--rundir={rundir}", "--pidfile=voiced.pid", "voiced", "--listen", listen],
                                   {}, rundir)
        self.assertOneLineExit(done, elapsed, f"--listen '{listen}'", "is already in use")


class DaemonOperatingTests(TestCase):
    timeout = 120

    def test_sigusr1_reopens_the_moved_log_file_and_admin_port_serves_health(self):
        daemon = Daemon(daemonize=True, admin=True)
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        log_path = os.path.join(daemon.rundir, "voiced.log")
        with open(log_path) as f:
            self.assertIn("twistd", f.readline(), "twistd's first start-up line is in the log file")

        # --admin-listen: health and metrics there, not on the media port.
        self.assertEqual(daemon.get("/health")[0], 200)
        self.assertEqual(daemon.get("/metrics")[0], 200)
        self.assertEqual(daemon.get("/health", port=daemon.port)[0], 404)
        self.assertEqual(daemon.get("/metrics", port=daemon.port)[0], 404)

        os.rename(log_path, log_path + ".1")
        with open(os.path.join(daemon.rundir, "voiced.pid")) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not os.path.exists(log_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(daemon.get("/health/ready")[0], 200, "still serving")
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.5)
        self.assertEqual(daemon.get("/health")[0], 200, "SIGHUP does not kill it either")
        with open(log_path) as f:
            reopened = f.read()
        self.assertIn("LOG_REOPENED signal=SIGUSR1", reopened)
        self.assertIn("LOG_REOPENED signal=SIGHUP", reopened)
        with open(log_path + ".1") as f:
            self.assertIn("APP_START", f.read())
