import calendar
import io
import json
import os
import signal
import sys
import threading

from twisted.logger import ILogObserver, Logger, LoggingFile, LogLevel, LogPublisher, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from voiced.logging import Logger as VoicedLogger
from voiced.logging import QueueLogObserver, format_message, json_observer, make_observer, text_observer

WHEN = calendar.timegm((2026, 11, 25, 9, 30, 1)) + 0.123


def event(fmt="call {call_id} started", level=LogLevel.info, namespace="voiced.service", log_time=WHEN, **keys):
    return dict(log_format=fmt, log_level=level, log_namespace=namespace, log_time=log_time, **keys)


def a_failure():
    try:
        1 / 0
    except ZeroDivisionError:
        return Failure()


class GatedStream:
    """A stream whose write blocks until the test opens the gate (a stalled pipe or terminal)."""

    def __init__(self):
        self.gate = threading.Event()
        self.parts = []
        self.writes = 0

    def write(self, text):
        self.gate.wait(10)
        self.parts.append(text)
        self.writes += 1

    def flush(self):
        pass

    def lines(self):
        return "".join(self.parts).splitlines()


class MeteredStream(GatedStream):
    """A slow stream that does not depend on the machine's speed: each write waits for a
    permit the test hands out (``allow``), until ``open_fully``."""

    def __init__(self):
        super().__init__()
        self.permits = threading.Semaphore(0)

    def allow(self, writes=1):
        self.permits.release(writes)

    def open_fully(self):
        self.gate.set()
        self.permits.release()  # the one writer, if it waits for a permit now

    def write(self, text):
        if not self.gate.is_set():
            self.permits.acquire(timeout=10)
        super().write(text)


class LockingPipeStream:
    """Writes to a pipe under its own lock, and holds it until ``release`` is set (a
    BufferedWriter stuck on a slow pipe)."""

    def __init__(self, fd):
        self.fd = fd
        self.lock = threading.Lock()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text):
        with self.lock:
            self.entered.set()
            self.release.wait(10)
            os.write(self.fd, text.encode())

    def flush(self):
        with self.lock:
            pass


class BrokenStream:
    def write(self, text):
        raise BrokenPipeError("closed")

    def flush(self):
        raise BrokenPipeError("closed")


class FormatTests(SynchronousTestCase):
    def written(self, fmt, *events, min_level="info"):
        stream = io.StringIO()
        observer = make_observer(fmt, min_level, stream)
        for e in events:
            observer(e)
        self.assertTrue(observer.stop())
        return stream.getvalue()

    def test_text_line(self):
        out = self.written("text", event(call_id="CA1"))
        self.assertEqual(out, "2026-11-25T09:30:01.123Z info [voiced.service] call CA1 started\n")

    def test_text_failure_traceback_follows_indented(self):
        out = self.written("text", event("stt failed", level=LogLevel.error, log_failure=a_failure()))
        first, *rest = out.rstrip("\n").split("\n")
        self.assertEqual(first, "2026-11-25T09:30:01.123Z error [voiced.service] stt failed")
        self.assertIn("Traceback", rest[0])
        self.assertTrue(all(line.startswith("\t") for line in rest))
        self.assertIn("ZeroDivisionError", rest[-1])

    def test_text_multiline_message_cannot_forge_a_line(self):
        out = self.written("text", event("caller said {text}", text="hi\n2026-01-01T00:00:00.000Z error [x] forged"))
        self.assertEqual(out.count("\n"), 2)
        self.assertIn("\n\t2026-01-01", out)

    def test_message_is_what_twisted_would_say(self):
        class Caller:
            name = "Ann"

            def greet(self):
                return "hello"

        cases = [
            event("EOT call={call} reason={reason}{detail} {measure}={waited}", call="CA1", reason="hold",
                  detail="", measure="silence_ms", waited=0),
            event("{text!r} at {ms:>6.1f} ms {{braces}}", text="it's", ms=3.14159),
            event("{who.name} said {words[0]}", who=Caller(), words=["yes", "no"]),
            event("{who.greet()} from {who.name}", who=Caller()),  # twisted's call syntax
            event("{missing} is not there"),
            event("{} positional"),
            event("{0} positional"),
            event("unbalanced {"),
            event(b"bytes {call_id}", call_id="CA1"),
            event(None),
            event(42),
            {"log_level": LogLevel.info},
        ]
        for e in cases:
            self.assertEqual(format_message(e), formatEvent(e), e.get("log_format"))
        self.assertEqual(format_message(cases[1]), "\"it's\" at    3.1 ms {braces}")
        self.assertIn("Unable to format event", format_message(cases[4]))

    def test_timestamps_of_lines_in_one_second_and_the_next(self):
        out = self.written("text", event("a", log_time=WHEN), event("b", log_time=WHEN + 0.5),
                           event("c", log_time=WHEN + 0.877), event("d", log_time=WHEN - 1))
        self.assertEqual([line.split(" ")[0] for line in out.splitlines()],
                         ["2026-11-25T09:30:01.123Z", "2026-11-25T09:30:01.623Z", "2026-11-25T09:30:02.000Z",
                          "2026-11-25T09:30:00.123Z"])

    def test_text_skips_empty_event(self):
        self.assertEqual(self.written("text", {"log_level": LogLevel.info, "log_time": WHEN}), "")

    def test_json_line(self):
        out = self.written(
            "json",
            event(
                call_id="CA1",
                turn_ms=412.5,
                words=["a", "b"],
                protocol=object(),  # not serializable: left out
                ratio=float("nan"),  # not valid JSON: left out
                log_source=self,  # twisted internals: left out
            ),
        )
        self.assertEqual(out.count("\n"), 1)
        self.assertEqual(
            json.loads(out),
            {
                "time": "2026-11-25T09:30:01.123Z",
                "level": "info",
                "namespace": "voiced.service",
                "message": "call CA1 started",
                "call_id": "CA1",
                "turn_ms": 412.5,
                "words": ["a", "b"],
            },
        )

    def test_json_failure(self):
        out = self.written("json", event("boom", level=LogLevel.critical, log_failure=a_failure()))
        record = json.loads(out)
        self.assertEqual(record["level"], "critical")
        self.assertEqual(record["message"], "boom")
        self.assertIn("ZeroDivisionError", record["failure"])

    def test_event_without_level_or_namespace(self):
        out = self.written("text", {"log_format": "plain", "log_time": WHEN})
        self.assertEqual(out, "2026-11-25T09:30:01.123Z info [-] plain\n")

    def test_through_a_twisted_logger(self):
        stream = io.StringIO()
        observer = make_observer("json", "debug", stream)
        log = Logger(namespace="voiced.call", observer=LogPublisher(observer))
        log.debug("frame {n}", n=7)
        log.warn("slow turn {ms}", ms=2400)
        observer.stop()
        records = [json.loads(line) for line in stream.getvalue().splitlines()]
        self.assertEqual(
            [(r["level"], r["message"]) for r in records], [("debug", "frame 7"), ("warn", "slow turn 2400")]
        )
        self.assertEqual(records[1]["namespace"], "voiced.call")


class VoicedLoggerTests(SynchronousTestCase):
    """voiced.logging.Logger: twisted's events, made for less."""

    def events_of(self, logger_class, emit):
        events = []
        log = logger_class(namespace="voiced.call", source="the source", observer=events.append)
        emit(log)
        for e in events:
            e.pop("log_time")
            e.pop("log_logger")
            if isinstance(e.get("logger"), Logger):  # the one an invalid level was given to
                e["logger"] = e["logger"].namespace
            if "log_failure" in e:
                e["log_failure"] = e["log_failure"].type
        return events

    def test_the_same_events_as_twisteds_logger(self):
        def each_kind(log):
            log.info("EOT call={call} reason={reason}", call="CA1", reason="hold")
            log.info()
            log.debug("frame {n}", n=7)
            log.warn("slow turn {ms}", ms=2400)
            log.error("broken")
            log.emit(LogLevel.critical, "emitted {x}", x=1)
            log.failure("failed {what}", a_failure(), what="it")
            log.emit("no such level", "bad level")  # twisted reports it as a critical failure
            log.emit(["unhashable"], "bad level")

        ours = self.events_of(VoicedLogger, each_kind)
        self.assertEqual(ours, self.events_of(Logger, each_kind))
        self.assertEqual(len(ours), 9)
        self.assertEqual(ours[0]["log_level"], LogLevel.info)
        self.assertEqual(ours[0]["log_source"], "the source")

    def test_a_trace_names_the_logger(self):
        trace = []
        log = VoicedLogger(namespace="voiced.call", observer=lambda event: None)
        log.info("traced", log_trace=trace)
        self.assertEqual(trace, [(log, log.observer)])


class LevelTests(SynchronousTestCase):
    def test_gating(self):
        stream = io.StringIO()
        observer = make_observer("text", "warn", stream)
        for level in (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical):
            observer(event(level.name, level=level))
        observer.stop()
        self.assertEqual(
            [line.split(" ")[1] for line in stream.getvalue().splitlines()], ["warn", "error", "critical"]
        )

    def test_dropped_before_formatting(self):
        class CountingFailure:
            calls = 0

            def getTraceback(self):
                CountingFailure.calls += 1
                return "tb"

        observer = make_observer("text", "error", io.StringIO())
        observer(event(level=LogLevel.info, log_failure=CountingFailure()))
        observer(event(level=LogLevel.error, log_failure=CountingFailure()))
        observer.stop()
        self.assertEqual(CountingFailure.calls, 1)

    def test_bad_settings(self):
        self.assertRaises(ValueError, QueueLogObserver, io.StringIO(), "xml")
        self.assertRaises(ValueError, QueueLogObserver, io.StringIO(), "text", "verbose")


class NonBlockingTests(SynchronousTestCase):
    def test_stalled_stream_does_not_block_callers(self):
        stream = GatedStream()
        observer = make_observer("text", "info", stream)
        self.addCleanup(stream.gate.set)
        for i in range(1000):
            observer(event("line {i}", i=i))
        # Every call returned while the writer is stuck in its first write.
        self.assertEqual(stream.writes, 0)
        stream.gate.set()
        self.assertTrue(observer.stop(timeout=10))
        expected = [f"2026-11-25T09:30:01.123Z info [voiced.service] line {i}" for i in range(1000)]
        self.assertEqual(stream.lines(), expected)

    def test_slow_stream_batches_and_stop_drains_everything(self):
        stream = MeteredStream()
        self.addCleanup(stream.open_fully)
        observer = make_observer("json", "info", stream)
        for burst in range(5):
            for i in range(1000):
                observer(event("line {n}", n=burst * 1000 + i))
            stream.allow()  # the stream takes one write per burst while the bursts come
        stream.open_fully()
        self.assertTrue(observer.stop(timeout=10))
        self.assertEqual([json.loads(line)["n"] for line in stream.lines()], list(range(5000)))
        # 5000 lines took far fewer writes than lines (one per momentarily-full queue).
        self.assertLess(stream.writes, 500)

    def test_after_stop_lines_are_written_synchronously(self):
        stream = io.StringIO()
        observer = make_observer("text", "info", stream)
        observer(event("before"))
        self.assertTrue(observer.stop())
        observer(event("after"))
        self.assertEqual(len(stream.getvalue().splitlines()), 2)
        self.assertTrue(observer.stop())  # idempotent

    def test_stop_before_any_event(self):
        self.assertTrue(make_observer("text", "info", io.StringIO()).stop())

    def test_stop_gives_up_after_timeout(self):
        stream = GatedStream()
        observer = make_observer("text", "info", stream)
        self.addCleanup(stream.gate.set)
        observer(event("stuck"))
        self.assertFalse(observer.stop(timeout=0.05))
        stream.gate.set()
        self.assertTrue(observer.stop(timeout=10))
        self.assertEqual(len(stream.lines()), 1)

    def test_broken_stream_is_counted_not_raised(self):
        observer = make_observer("text", "info", BrokenStream())
        observer(event("lost"))
        observer.stop()
        self.assertGreater(observer.write_errors, 0)
        observer(event("also lost"))  # synchronous path after stop: no exception either

    def test_fork_mid_write_gives_the_child_a_working_writer(self):
        # twistd creates its --logger observer before it forks into a daemon, and the
        # fork can catch the writer inside stream.write, holding the stream's lock.
        read_fd, write_fd = os.pipe()
        stream = LockingPipeStream(write_fd)
        observer = make_observer("text", "info", stream)
        self.addCleanup(stream.release.set)
        observer(event("parent"))
        self.assertTrue(stream.entered.wait(5))
        # The fork is called while the writer is inside its write; the write may finish
        # only once the fork has begun (its hook then waits for it).
        before_fork = observer._before_fork

        def fork_begins():
            stream.release.set()
            before_fork()

        self.patch(observer, "_before_fork", fork_begins)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.alarm(10)  # a deadlocked child dies and fails the test instead of hanging it
                observer(event("child"))
                code = 0 if observer.stop(timeout=5) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        observer.stop()
        os.close(write_fd)
        with os.fdopen(read_fd) as reader:
            self.assertEqual(
                [line.rsplit(" ", 1)[1] for line in reader.read().splitlines()], ["parent", "child"]
            )


class FactoryTests(SynchronousTestCase):
    def test_twistd_logger_factories(self):
        self.patch(os, "environ", {"VOICED_LOG_LEVEL": "warn"})
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        for factory in (text_observer, json_observer):
            observer = factory()
            self.assertTrue(ILogObserver.providedBy(observer))
            observer(event("quiet"))
            observer(event("loud", level=LogLevel.warn))
            observer.stop()
        text_line, json_line = stdout.getvalue().splitlines()
        self.assertEqual(text_line, "2026-11-25T09:30:01.123Z warn [voiced.service] loud")
        self.assertEqual(json.loads(json_line)["message"], "loud")
        self.patch(os, "environ", {"VOICED_LOG_LEVEL": "loud"})
        self.assertRaises(ValueError, text_observer)

    def test_never_writes_into_twisted_redirected_stdout(self):
        # After twistd begins logging, sys.stdout logs what it is given: a loop.
        self.patch(sys, "stdout", LoggingFile(Logger(observer=LogPublisher())))
        observer = QueueLogObserver()
        self.addCleanup(observer.stop)
        self.assertIs(observer._stream, sys.__stdout__)
