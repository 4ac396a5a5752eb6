"""Log output that never blocks the reactor: format where logged, write on a thread.

twisted.logger's file observers write and flush on the thread that logs, usually the
reactor, so a slow terminal, pipe or disk stalls every call. ``QueueLogObserver``
drops events below its level before any work, formats the rest into one line right
away (the event dict belongs to the caller and may change later), and hands the line
to a daemon writer thread through a ``queue.SimpleQueue``, whose ``put`` never blocks.
The writer writes in batches and flushes whenever the queue is momentarily empty.

Text lines look like ``2026-11-25T09:30:01.123Z info [voiced.service] message`` (UTC),
with a failure's traceback on the following lines, each indented by a tab. JSON lines
hold ``time``, ``level``, ``namespace``, ``message``, ``failure`` (when the event has
one) and every other JSON-serializable key of the event except twisted's ``log_*``
internals.

Two ways in:
  - ``make_observer(settings.log_format, settings.log_level)``, given to
    ``globalLogBeginner.beginLoggingTo`` or set as the application's ``ILogObserver``;
  - ``twistd --logger=voiced.logging.text_observer`` (or ``json_observer``), which
    takes its level from ``VOICED_LOG_LEVEL`` (default info).
An observer given a path (``log_to_file``) reopens it on ``reopen()``, after logrotate
moved it away (SIGUSR1, SIGHUP: see voiced.signals). The writer thread does the
reopening, in order with the lines: the ones before go to the old file.
``stop()`` writes what is pending; the service calls it at shutdown, and every
observer also stops at interpreter exit. After ``stop()`` lines are written
synchronously, so shutdown messages are not lost.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
import threading
import time
import weakref
from queue import Empty, SimpleQueue
from typing import Any, Callable, TextIO

from twisted.logger import ILogObserver, LogEvent, LoggingFile, LogLevel, formatEvent
from twisted.logger import Logger as TwistedLogger
from zope.interface import implementer

_RANK = {level: rank for rank, level in enumerate(LogLevel.iterconstants())}
_RANK_BY_NAME = {level.name: rank for level, rank in _RANK.items()}
_INFO = _RANK[LogLevel.info]
# Lines per write call: few system calls under load, bounded memory per batch.
_BATCH_LINES = 512
_STOP = object()
_REOPEN = object()
_FORK_WAIT_S = 2.0
# Keys of the legacy twisted.python.log event that duplicate our own fields.
_LEGACY_KEYS = frozenset({"message", "isError", "failure", "why", "format", "time", "system"})


# The last second's text: lines come many a second, and strftime is most of a timestamp's
# cost. One tuple, replaced whole: safe for events logged from other threads too.
_last_second: tuple[int, str] = (-1, "")


class Logger(TwistedLogger):
    """twisted's ``Logger``, same events, for less: twisted checks each level against
    LogLevel's constants sorted anew per event, and ``info`` copies its keywords twice.
    For the lines the daemon writes every turn (EOT, CALLER, BOT, TURN)."""

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if type(level) is not type(LogLevel.info) or level not in _RANK:  # (a list is no key)
            super().emit(level, format, **kwargs)  # twisted's own complaint about the level
            return
        self._publish(level, format, kwargs)

    def info(self, format: str | None = None, **kwargs: object) -> None:
        self._publish(LogLevel.info, format, kwargs)

    def _publish(self, level: LogLevel, format: str | None, event: dict[str, Any]) -> None:
        event.update(log_logger=self, log_level=level, log_namespace=self.namespace, log_source=self.source,
                     log_format=format, log_time=time.time())
        if "log_trace" in event:
            event["log_trace"].append((self, self.observer))
        self.observer(event)


def _timestamp(when: float | None) -> str:
    global _last_second
    if when is None:
        when = time.time()
    # Round on whole milliseconds: float seconds like 1795599001.123 are a hair below .123.
    seconds, millis = divmod(round(when * 1000), 1000)
    cached_second, text = _last_second
    if seconds != cached_second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, text)
    return f"{text}.{millis:03d}Z"


def _level_name(event: LogEvent) -> str:
    level = event.get("log_level")
    return level.name if level in _RANK else "info"


def _traceback(event: LogEvent) -> str:
    failure = event.get("log_failure")
    if failure is None:
        return ""
    try:
        return failure.getTraceback().rstrip("\n")
    except Exception as e:  # a broken failure must not take logging down with it
        return f"(unable to format traceback: {e!r})"


def format_message(event: LogEvent) -> str:
    """What twisted's ``formatEvent`` says, some 15 times sooner (twisted formats through
    ``string.Formatter``, in Python) for a str format of the event's keys; twisted's own
    syntax (``{key()}``), a flattened event or one that does not format go to ``formatEvent``."""
    fmt = event.get("log_format")
    if fmt.__class__ is str and "()" not in fmt and "log_flattened" not in event:
        try:
            return fmt.format_map(event)
        except Exception:
            pass
    return formatEvent(event)


def format_text(event: LogEvent) -> str | None:
    """One text line (newline-terminated), or None for an event with nothing to say."""
    message = format_message(event)
    failure = _traceback(event)
    if failure:
        message = f"{message}\n{failure}" if message else failure
    if not message:
        return None
    namespace = event.get("log_namespace") or "-"
    body = message.rstrip("\n").replace("\n", "\n\t")
    return f"{_timestamp(event.get('log_time'))} {_level_name(event)} [{namespace}] {body}\n"


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple, dict)):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            return False
        return True
    return False


def format_json(event: LogEvent) -> str:
    """One JSON object per line (newline-terminated)."""
    record: dict[str, Any] = {
        "time": _timestamp(event.get("log_time")),
        "level": _level_name(event),
        "namespace": event.get("log_namespace") or "-",
        "message": format_message(event),
    }
    failure = _traceback(event)
    if failure:
        record["failure"] = failure
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS or key in record:
            continue
        if _jsonable(value):
            record[key] = value
    return json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"


_FORMATTERS: dict[str, Callable[[LogEvent], str | None]] = {"text": format_text, "json": format_json}


def _default_stream() -> TextIO:
    # Once logging has begun, twistd replaces sys.stdout with a LoggingFile that
    # logs what is written to it: writing our lines there would loop forever.
    if isinstance(sys.stdout, LoggingFile):
        return sys.__stdout__
    return sys.stdout


def _weak_call(ref: weakref.ref[QueueLogObserver], method: str) -> None:
    observer = ref()
    if observer is not None:
        getattr(observer, method)()


@implementer(ILogObserver)
class QueueLogObserver:
    def __init__(self, stream: TextIO | None = None, fmt: str = "text", min_level: str = "info") -> None:
        if fmt not in _FORMATTERS:
            raise ValueError(f"log format must be one of {', '.join(_FORMATTERS)}, not {fmt!r}")
        if min_level not in _RANK_BY_NAME:
            raise ValueError(f"log level must be one of {', '.join(_RANK_BY_NAME)}, not {min_level!r}")
        self._format = _FORMATTERS[fmt]
        self._min_rank = _RANK_BY_NAME[min_level]
        self._stream = stream if stream is not None else _default_stream()
        self._queue: SimpleQueue[Any] = SimpleQueue()
        # Started on the first event, not here: twistd builds its --logger observer
        # before it forks into a daemon, and threads do not survive a fork.
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # Held around every write and flush, and across a fork: a fork that caught the
        # writer inside stream.write would leave the stream's own lock held forever
        # in the child.
        self._io_lock = threading.Lock()
        self._io_held_for_fork = False
        self._stopped = False
        self._path: str | None = None  # the file we opened (and may reopen), if any
        self.write_errors = 0
        ref = weakref.ref(self)
        os.register_at_fork(
            before=lambda: _weak_call(ref, "_before_fork"),
            after_in_parent=lambda: _weak_call(ref, "_after_fork_in_parent"),
            after_in_child=lambda: _weak_call(ref, "_after_fork_in_child"),
        )
        atexit.register(_weak_call, ref, "stop")

    def set_stream(self, stream: TextIO) -> None:
        """Write to ``stream`` from now on (the service switches to a file once it
        finds twistd has daemonized and pointed stdout at /dev/null)."""
        with self._io_lock:
            self._stream = stream

    @property
    def path(self) -> str | None:
        return self._path

    def log_to_file(self, path: str) -> None:
        """Append to the file at ``path`` from now on; ``reopen()`` opens that path again."""
        stream = _open_log(path)
        with self._io_lock:
            self._stream, self._path = stream, path

    def reopen(self) -> bool:
        """Open the log file again at its path (a rotation moved it); False without a file.
        Never blocks the caller: the writer thread opens the new file."""
        if self._path is None:
            return False
        if self._stopped:
            with self._io_lock:
                self._reopen_now()
            return True
        if self._thread is None:
            self._start_writer()
        self._queue.put(_REOPEN)
        return True

    def _reopen_now(self) -> None:
        assert self._path is not None
        self._flush()
        try:
            stream = _open_log(self._path)
        except OSError as e:  # keep writing to the old file rather than nowhere
            self.write_errors += 1
            self._write(f"{_timestamp(None)} error [voiced.logging] cannot reopen {self._path}: {e.strerror}\n")
            return
        old, self._stream = self._stream, stream
        try:
            old.close()
        except Exception:
            pass

    def __call__(self, event: LogEvent) -> None:
        if _RANK.get(event.get("log_level"), _INFO) < self._min_rank:
            return
        line = self._format(event)
        if line is None:
            return
        if self._stopped:
            with self._io_lock:
                self._write(line)
                self._flush()
            return
        if self._thread is None:
            self._start_writer()
        self._queue.put(line)

    def stop(self, timeout: float = 2.0) -> bool:
        """Write every pending line and switch to synchronous writes. False if the
        stream did not take the pending lines within ``timeout`` seconds (the writer
        thread then keeps going on its own)."""
        self._stopped = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout)
            if thread.is_alive():
                return False
        # Lines put by a thread that had not yet seen _stopped.
        with self._io_lock:
            lines = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except Empty:
                    break
                if item is _REOPEN:
                    if lines:
                        self._write("".join(lines))
                        lines = []
                    self._reopen_now()
                elif item is not _STOP:
                    lines.append(item)
            if lines:
                self._write("".join(lines))
            self._flush()
        return True

    def _start_writer(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="voiced-log-writer", daemon=True)
                thread.start()
                self._thread = thread

    def _before_fork(self) -> None:
        # Bounded: a stalled stream must not hang the fork (the child may then stall too).
        self._io_held_for_fork = self._io_lock.acquire(timeout=_FORK_WAIT_S)

    def _after_fork_in_parent(self) -> None:
        if self._io_held_for_fork:
            self._io_held_for_fork = False
            self._io_lock.release()

    def _after_fork_in_child(self) -> None:
        # The writer thread does not survive the fork, and the queue's internal lock may
        # be left as that thread held it (a new writer then waits forever on it): start
        # the child with a fresh queue. Lines pending at the fork were the parent's.
        self._queue = SimpleQueue()
        self._thread = None
        self._start_lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._io_held_for_fork = False

    def _run(self) -> None:
        queue = self._queue
        while True:
            batch = [queue.get()]
            drained = False
            while len(batch) < _BATCH_LINES:
                try:
                    batch.append(queue.get_nowait())
                except Empty:
                    drained = True
                    break
            stopping = False
            pending: list[str] = []
            with self._io_lock:
                for item in batch:
                    if item is _STOP:
                        stopping = True
                    elif item is _REOPEN:
                        if pending:
                            self._write("".join(pending))
                            pending = []
                        self._reopen_now()
                    else:
                        pending.append(item)
                if pending:
                    self._write("".join(pending))
                if drained or stopping:
                    self._flush()
            if stopping:
                return

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
        except Exception:  # e.g. a closed pipe: count it, keep the process (and the queue) going
            self.write_errors += 1

    def _flush(self) -> None:
        try:
            self._stream.flush()
        except Exception:
            self.write_errors += 1


def _open_log(path: str) -> TextIO:
    return open(path, "a", buffering=1, encoding="utf-8")


def make_observer(fmt: str, min_level: str, stream: TextIO | None = None, path: str = "") -> QueueLogObserver:
    """An observer writing to ``path`` (reopened on ``reopen()``), else ``stream``, else stdout."""
    observer = QueueLogObserver(stream=stream, fmt=fmt, min_level=min_level)
    if path:
        observer.log_to_file(path)
    return observer


def text_observer() -> QueueLogObserver:
    """For ``twistd --logger=voiced.logging.text_observer``."""
    return make_observer("text", os.environ.get("VOICED_LOG_LEVEL", "info"))


def json_observer() -> QueueLogObserver:
    """For ``twistd --logger=voiced.logging.json_observer``."""
    return make_observer("json", os.environ.get("VOICED_LOG_LEVEL", "info"))
