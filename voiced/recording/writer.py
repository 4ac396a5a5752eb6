"""The recordings' disk writer: one thread for the whole process, owned by the service
(started in ``startService``, stopped in ``stopService``); every call's recording
borrows it.

The reactor never touches the disk: it hands the thread work (open a file, append a
second of audio, close, sweep old files) and goes on. The queue is bounded by the audio
it holds (``max_pending_bytes``): when the disk cannot keep up with the calls, a chunk
that does not fit is dropped and counted rather than letting memory grow: the file gets
as much silence instead (so what follows stays in time) and the recording says so in the
log. Opening and closing are never dropped, so no file is left open. Work runs in the order it was given; answers (a failure, a sweep's count, the
thread's end) come back on the reactor thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from voiced.recording.wav import WavFile

log = Logger(namespace="voiced.recording")

#: About 17 minutes of one call, or 2 s each of 500 calls, waiting for the disk.
MAX_PENDING_BYTES = 32 * 1024 * 1024


class RecordingWriter:
    def __init__(self, reactor: Any, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self._reactor = reactor
        self.max_pending_bytes = max_pending_bytes
        self._work: deque[tuple[Callable[..., Any], tuple[Any, ...], int]] = deque()
        self._ready = threading.Condition()
        self.pending_bytes = 0
        self.dropped_bytes = 0
        self.written_bytes = 0  # by the thread; read on the reactor only for reports
        self._files: dict[str, WavFile] = {}  # the thread's own
        self._failed: set[str] = set()  # the thread's own: a file that failed takes no more work
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped: Deferred[None] | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopping

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="voiced-recordings", daemon=True)
        self._thread.start()

    # ---- what a call's recording asks (reactor thread) -------------------------------------------
    def open(self, path: str) -> bool:
        """Create ``path`` (its directory too); False when the writer is not running."""
        return self._put(self._open, (path,), 0)

    def append(self, path: str, frames: bytes) -> bool:
        """Append audio to ``path``; False when it did not fit in the queue (or the writer
        stopped). A chunk that does not fit becomes as much silence, written without
        holding memory, so what follows stays in time with the transcript."""
        if self.pending_bytes + len(frames) > self.max_pending_bytes:
            self.dropped_bytes += len(frames)
            self._put(self._append_silence, (path, len(frames)), 0)
            return False
        return self._put(self._append, (path, frames), len(frames))

    def close(self, path: str) -> Deferred[None]:
        """Close ``path``; fires once it is closed, whole on disk (at once if the writer
        stopped, which closed every file)."""
        d: Deferred[None] = Deferred()
        if not self._put(self._close, (path, d), 0):
            return succeed(None)
        return d

    def sweep(self, directory: str, older_than_s: float) -> Deferred[int]:
        """Delete the recordings under ``directory`` last written more than ``older_than_s``
        ago; fires with how many (0 if the writer is not running)."""
        d: Deferred[int] = Deferred()
        if not self._put(self._sweep, (directory, older_than_s, d), 0):
            return succeed(0)
        return d

    def stop(self) -> Deferred[None]:
        """Finish the work given so far (every file closed), then end the thread."""
        if self._thread is None:
            return succeed(None)
        if self._stopped is None:
            self._stopped = Deferred()
            with self._ready:
                self._stopping = True
                self._ready.notify()
        return self._stopped

    def _put(self, fn: Callable[..., Any], args: tuple[Any, ...], size: int) -> bool:
        if not self.running:
            return False
        with self._ready:
            self._work.append((fn, args, size))
            self.pending_bytes += size
            self._ready.notify()
        return True

    # ---- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._work and not self._stopping:
                    self._ready.wait()
                if not self._work:  # stopping, and everything given is done
                    break
                fn, args, size = self._work.popleft()
            try:
                fn(*args)
            except Exception as e:  # one file's trouble never stops the thread
                self._tell(log.warn, "RECORDING_FAILED {what}: {error}", what=fn.__name__.strip("_"), error=str(e))
            finally:
                with self._ready:
                    self.pending_bytes -= size
        for path in list(self._files):
            self._close(path)
        self._reactor.callFromThread(self._ended)

    def _ended(self) -> None:
        self._thread = None
        if self._stopped is not None:
            self._stopped.callback(None)

    def _tell(self, emit: Callable[..., None], message: str, **fields: Any) -> None:
        self._reactor.callFromThread(lambda: emit(message, **fields))

    def _open(self, path: str) -> None:
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            self._files[path] = WavFile(path)
        except OSError as e:
            self._failed.add(path)
            self._tell(log.error, "RECORDING_FAILED path={path}: cannot create it: {error}", path=path,
                       error=e.strerror or str(e))

    def _append(self, path: str, frames: bytes) -> None:
        wav = self._files.get(path)
        if wav is None or path in self._failed:
            return
        try:
            self.written_bytes += wav.append(frames)
        except OSError as e:
            self._failed.add(path)
            self._tell(log.error, "RECORDING_FAILED path={path}: {error}; the file keeps what was written",
                       path=path, error=e.strerror or str(e))

    def _append_silence(self, path: str, size: int) -> None:
        step = 64 * 1024
        for at in range(0, size, step):
            self._append(path, bytes(min(step, size - at)))

    def _close(self, path: str, done: Deferred[None] | None = None) -> None:
        self._failed.discard(path)
        wav = self._files.pop(path, None)
        try:
            if wav is not None:
                wav.close()
        finally:
            if done is not None:
                self._reactor.callFromThread(done.callback, None)

    def _sweep(self, directory: str, older_than_s: float, done: Deferred[int]) -> None:
        removed = 0
        cutoff = time.time() - older_than_s
        try:
            for folder, _, names in os.walk(directory, topdown=False):
                for name in names:
                    path = os.path.join(folder, name)
                    if not name.endswith(".wav") or path in self._files:
                        continue
                    try:
                        if os.stat(path).st_mtime < cutoff:
                            os.remove(path)
                            removed += 1
                    except OSError:
                        continue  # gone meanwhile, or not ours to delete: the next sweep sees it
                if folder != directory:
                    try:
                        os.rmdir(folder)  # only if empty: a day's folder with nothing left in it
                    except OSError:
                        pass
        finally:
            self._reactor.callFromThread(done.callback, removed)
