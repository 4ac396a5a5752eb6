"""``--workers N``: N voiced processes sharing the listening ports, one reactor (core) each.

The supervisor (the process twistd runs) binds every ``--listen`` / ``--admin-listen``
port itself and never accepts on it: it stops reading at once, and each worker
inherits the socket and adopts it (``reactor.adoptStreamPort``); the kernel hands
each new connection to whichever worker accepts first. That is not an even split: the
worker the kernel wakes first can take most of a burst (7 calls of 8 in one measurement;
405/395 of 800 calls at 50 calls/s). A worker
is a fresh Python process (``python -m voiced.workers``), so its threads, gRPC channels and
engines are its own, created after it starts; it logs ``APP_START ... worker=I``, and
``CALL_WORKER call=... worker=I pid=P`` for each call it takes.

- Metrics: prometheus_client's multiprocess mode. The supervisor points
  ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory before any worker starts; each
  worker's ``/metrics`` serves the sum over every worker (``voiced.metrics``), and a
  dead worker's live gauges are dropped (``mark_process_dead``).
- Readiness: each worker writes its own ready flag to a file in a state directory;
  ``/health/ready`` on any worker is 200 only when every worker is ready.
- A worker that exits while the daemon is not stopping is logged (``WORKER_EXIT``)
  and started again (``WORKER_START``), after a delay that grows if it keeps dying
  young. Its calls' sockets close with the process: the carrier sees the stream end.
- Stopping (SIGTERM/SIGINT to the supervisor): every worker gets SIGTERM and drains
  as a single daemon does; the supervisor exits when the last one has.
- ``--max-calls`` is the daemon's total: every worker publishes its calls in progress to
  a shared file (``voiced.call_counts``) and admits a call only while the sum has room.

A carrier's own listener (``--audiosocket-listen``) is shared the same way.

Only ``tcp:``/``tcp6:`` listeners can be shared (terminate TLS in front; config.py checks).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from twisted.application.service import Service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger

from voiced.call_counts import CallCounts
from voiced.config import Settings
from voiced.worker_spec import WORKER_ENV, WorkerSpec, call_counts_path, carrier_endpoints

log = Logger(namespace="voiced.workers")

#: A worker that dies sooner than this after its start is dying young: its restart waits longer.
YOUNG_S = 10.0
RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 30.0
#: After the drain timeout, how long a stopping worker gets before SIGKILL.
KILL_GRACE_S = 5.0


# ---- the supervisor -----------------------------------------------------------------------
class _WorkerProcess(protocol.ProcessProtocol):
    """Relays a worker's output, whole lines at a time, to the supervisor's stdout."""

    def __init__(self, supervisor: "WorkerSupervisor", index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.pid: int | None = None
        self.started = time.monotonic()
        self.ended: Deferred[None] = Deferred()
        self._partial = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]

    def childDataReceived(self, fd: int, data: bytes) -> None:
        buf = self._partial.get(fd, b"") + data
        lines, sep, rest = buf.rpartition(b"\n")
        self._partial[fd] = rest
        if sep:
            _write_out(lines + sep)

    def processEnded(self, reason: Any) -> None:
        for fd, rest in self._partial.items():
            if rest:
                _write_out(rest + b"\n")
        self.supervisor.worker_ended(self, reason.value)
        self.ended.callback(None)


def _write_out(data: bytes) -> None:
    try:
        os.write(1, data)
    except OSError:
        pass


class WorkerSupervisor(Service):
    name = "voiced-workers"

    def __init__(self, settings: Settings, reactor: Any = None, startup_warnings: Any = ()) -> None:
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self.settings = settings
        self.reactor = reactor
        self.startup_warnings = list(startup_warnings)
        self.count = settings.workers
        self.workers: dict[int, _WorkerProcess] = {}
        self.stopping = False
        self._ports: list[Any] = []
        self._listen_fds: list[tuple[int, int]] = []
        self._admin_fd: tuple[int, int] | None = None
        self._carrier_fds: list[tuple[str, int, int]] = []
        self._restart_delay: dict[int, float] = {}
        self._pending_restarts: dict[int, Any] = {}
        self._own_metrics_dir = False
        self.metrics_dir = ""
        self.state_dir = ""
        self._call_counts: CallCounts | None = None
        self._log_observer: Any = None

    def setServiceParent(self, parent: Any) -> None:
        from twisted.logger import ILogObserver
        from twisted.python.components import Componentized

        if isinstance(parent, Componentized) and parent.getComponent(ILogObserver, None) is None:
            from voiced.logging import make_observer

            self._log_observer = make_observer(self.settings.log_format, self.settings.log_level,
                                               path=self.settings.log_file)
            parent.setComponent(ILogObserver, self._log_observer)
        super().setServiceParent(parent)

    # ---- the shared ports ----------------------------------------------------------------
    def _bind(self, option: str, description: str) -> tuple[int, int]:
        from voiced.listener import Listener

        placeholder = protocol.Factory()
        placeholder.noisy = False
        listener = Listener(option, description, placeholder, self.reactor)
        listener.privilegedStartService()  # a failed listen: one line, start-up fails
        ports: list[Any] = []
        listener._waitingForPort.addCallback(ports.append)  # fired synchronously for TCP
        port = ports[0]
        port.stopReading()  # the supervisor never accepts: its workers do
        self._ports.append(port)
        family = socket.AF_INET6 if port.getHost().type == "TCP6" else socket.AF_INET
        host = port.getHost()
        log.info("LISTENING {option} {description} port={port} shared by {n} workers", option=option,
                 description=description, port=host.port, n=self.count)
        return port.fileno(), int(family)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        for description in self.settings.listen:
            self._listen_fds.append(self._bind("--listen", description))
        if self.settings.admin_listen:
            self._admin_fd = self._bind("--admin-listen", self.settings.admin_listen)
        for option, description in carrier_endpoints(self.settings):
            self._carrier_fds.append((option, *self._bind(option, description)))

    # ---- workers -------------------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        from prometheus_client import multiprocess  # noqa: F401  (fails early if missing)

        self.metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        if self.metrics_dir:
            os.makedirs(self.metrics_dir, exist_ok=True)
            for name in os.listdir(self.metrics_dir):  # an earlier run's values must not count
                if name.endswith(".db"):
                    os.unlink(os.path.join(self.metrics_dir, name))
        else:
            self.metrics_dir = tempfile.mkdtemp(prefix="voiced-metrics-")
            self._own_metrics_dir = True
        self.state_dir = tempfile.mkdtemp(prefix="voiced-workers-")
        self._call_counts = CallCounts(call_counts_path(self.state_dir), self.count)
        if self._log_observer is not None:
            from voiced.signals import SignalHandlers

            # Ours, not the reactor's: twistd would otherwise exit with the signal's status.
            self._signals = SignalHandlers(self.reactor, self._reopen_logs, self._stop_signal)
            self._signals.install()
        log.info("WORKERS_START workers={n} supervisor_pid={pid} metrics_dir={dir}", n=self.count,
                 pid=os.getpid(), dir=self.metrics_dir)
        for warning in self.startup_warnings:
            log.warn("CONFIG_WARNING {warning}", warning=warning)
        for index in range(self.count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._pending_restarts.pop(index, None)
        if self.stopping:
            return
        spec = WorkerSpec(index, self.count, self.settings, tuple(self._listen_fds), self._admin_fd,
                          self.state_dir, os.getpid(), tuple(self._carrier_fds))
        env = dict(os.environ)
        env[WORKER_ENV] = spec.to_env()
        env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
        for fd, _family in self._listen_fds + ([self._admin_fd] if self._admin_fd else []):
            child_fds[fd] = fd
        for _option, fd, _family in self._carrier_fds:
            child_fds[fd] = fd
        worker = _WorkerProcess(self, index)
        self.workers[index] = worker
        self.reactor.spawnProcess(worker, sys.executable, [sys.executable, "-m", "voiced.workers"], env=env,
                                  childFDs=child_fds)
        log.info("WORKER_START worker={index} pid={pid}", index=index, pid=worker.pid)

    def worker_ended(self, worker: _WorkerProcess, reason: Any) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if worker.pid is not None:
            from prometheus_client import multiprocess

            try:
                multiprocess.mark_process_dead(worker.pid, self.metrics_dir)
            except OSError:
                pass
        try:
            os.unlink(os.path.join(self.state_dir, f"worker-{worker.index}"))
        except OSError:
            pass
        if self._call_counts is not None:
            self._call_counts.publish(worker.index, 0)  # its calls ended with it
        status = getattr(reason, "exitCode", None)
        sig = getattr(reason, "signal", None)
        how = f"signal={signal.Signals(sig).name}" if sig else f"status={status}"
        if self.stopping:
            log.info("WORKER_EXIT worker={index} pid={pid} {how}", index=worker.index, pid=worker.pid, how=how)
            return
        lived = time.monotonic() - worker.started
        delay = self._restart_delay.get(worker.index, RESTART_DELAY_S)
        delay = min(delay * 2, MAX_RESTART_DELAY_S) if lived < YOUNG_S else RESTART_DELAY_S
        self._restart_delay[worker.index] = delay
        log.error("WORKER_EXIT worker={index} pid={pid} {how} after {lived:.1f} s: its calls ended; "
                  "restarting it in {delay:.1f} s", index=worker.index, pid=worker.pid, how=how, lived=lived,
                  delay=delay)
        self._pending_restarts[worker.index] = self.reactor.callLater(delay, self._spawn, worker.index)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.stopping = True
        for call in self._pending_restarts.values():
            if call.active():
                call.cancel()
        self._pending_restarts.clear()
        ended = []
        for worker in list(self.workers.values()):
            ended.append(worker.ended)
            self._signal(worker, signal.SIGTERM)
        kill = self.reactor.callLater(self.settings.drain_timeout_s + KILL_GRACE_S, self._kill_all)
        d: Deferred[Any] = DeferredList(ended) if ended else succeed(None)

        def done(_: Any) -> None:
            if kill.active():
                kill.cancel()
            for port in self._ports:
                port.stopListening()
            if self._call_counts is not None:
                self._call_counts.close()
                self._call_counts = None
            shutil.rmtree(self.state_dir, ignore_errors=True)
            if self._own_metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
            log.info("WORKERS_STOPPED")
            if self._log_observer is not None:
                self.reactor.addSystemEventTrigger("after", "shutdown", self._log_observer.stop)

        d.addCallback(done)
        return d

    def _stop_signal(self, signal_name: str) -> None:
        if self.stopping:
            # A second signal: the workers' drains end at once, as a single daemon's does.
            for worker in list(self.workers.values()):
                self._signal(worker, signal.SIGTERM)
            return
        log.info("STOP_SIGNAL {signal}: draining {n} workers", signal=signal_name, n=len(self.workers))
        from twisted.internet.error import ReactorNotRunning

        try:
            self.reactor.stop()  # stopService drains the workers, then the supervisor exits 0
        except ReactorNotRunning:
            pass

    def _reopen_logs(self, signal_name: str) -> None:
        if self._log_observer is not None and self._log_observer.reopen():
            log.info("LOG_REOPENED signal={signal} file={file}", signal=signal_name, file=self._log_observer.path)
        for worker in list(self.workers.values()):  # each worker writes the file itself
            self._signal(worker, signal.SIGUSR1)

    def _kill_all(self) -> None:
        for worker in list(self.workers.values()):
            log.warn("WORKER_KILL worker={index} pid={pid}: still running after the drain timeout",
                     index=worker.index, pid=worker.pid)
            self._signal(worker, signal.SIGKILL)

    @staticmethod
    def _signal(worker: _WorkerProcess, signum: int) -> None:
        try:
            worker.transport.signalProcess(signum)  # type: ignore[union-attr]
        except Exception:
            pass  # already gone


# ---- a worker's own life ---------------------------------------------------------------------
def _die_with_parent() -> None:
    """Linux: SIGTERM (a drain) when the supervisor dies, so no worker outlives it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_main() -> int:
    spec = WorkerSpec.from_env()
    if spec is None:
        print("voiced.workers: started without a worker spec (run twistd voiced --workers N)", file=sys.stderr)
        return 2
    _die_with_parent()
    if spec.supervisor_pid and os.getppid() != spec.supervisor_pid:
        return 1  # the supervisor died before the line above
    from voiced.reactor import install

    reactor = install()
    from twisted.application import app
    from twisted.application.service import Application, IService
    from twisted.logger import ILogObserver, globalLogBeginner

    from voiced.app import build

    application = Application("voiced")
    build(spec.settings, worker=spec).setServiceParent(application)
    observer = application.getComponent(ILogObserver)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    IService(application).privilegedStartService()  # the adopted ports (twistd does this step itself)
    app.startApplication(application, False)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
