"""What a ``--workers`` worker is told by its supervisor, and what it publishes back.

The spec travels in the environment (a worker is a fresh ``python -m voiced.workers``
process); the worker writes its readiness and its calls in progress to the supervisor's
state directory, where every other worker reads them (``/health/ready``, ``--max-calls``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from twisted.logger import Logger

from voiced.call_counts import CallCounts
from voiced.config import Settings

log = Logger(namespace="voiced.workers")

#: The environment variable that makes a process a worker, and carries its spec.
WORKER_ENV = "VOICED_WORKER_SPEC"


def call_counts_path(state_dir: str) -> str:
    return os.path.join(state_dir, "calls")


def carrier_endpoints(settings: Settings) -> list[tuple[str, str]]:
    """(option, endpoint) of every carrier's own listener that is on: by convention the
    Settings field ``<carrier>_listen`` of the option ``--<carrier>-listen`` (AudioSocket's)."""
    return [(f"--{f.name.replace('_', '-')}", getattr(settings, f.name)) for f in fields(Settings)
            if f.name.endswith("_listen") and f.name not in ("listen", "admin_listen") and getattr(settings, f.name)]


def settings_to_json(settings: Settings) -> dict[str, Any]:
    return asdict(settings)


def settings_from_json(values: dict[str, Any]) -> Settings:
    out = dict(values)
    for f in fields(Settings):
        if isinstance(out.get(f.name), list):
            out[f.name] = tuple(out[f.name])
    return Settings(**out)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is told by its supervisor."""

    index: int
    count: int
    settings: Settings
    listen_fds: tuple[tuple[int, int], ...]  # (fd, address family) per --listen, in order
    admin_fd: tuple[int, int] | None
    state_dir: str
    supervisor_pid: int = 0
    carrier_fds: tuple[tuple[str, int, int], ...] = ()  # (option, fd, address family) per carrier_endpoints

    def to_env(self) -> str:
        return json.dumps({"index": self.index, "count": self.count, "settings": settings_to_json(self.settings),
                           "listen_fds": self.listen_fds, "admin_fd": self.admin_fd, "state_dir": self.state_dir,
                           "supervisor_pid": self.supervisor_pid, "carrier_fds": self.carrier_fds})

    @classmethod
    def from_env(cls, environ: Any = None) -> "WorkerSpec | None":
        raw = (os.environ if environ is None else environ).get(WORKER_ENV)
        if not raw:
            return None
        d = json.loads(raw)
        return cls(d["index"], d["count"], settings_from_json(d["settings"]),
                   tuple((int(fd), int(fam)) for fd, fam in d["listen_fds"]),
                   tuple(d["admin_fd"]) if d["admin_fd"] else None, d["state_dir"],  # type: ignore[arg-type]
                   int(d.get("supervisor_pid", 0)),
                   tuple((str(option), int(fd), int(fam)) for option, fd, fam in d.get("carrier_fds", ())))

    def open_call_counts(self) -> CallCounts:
        """The daemon's calls in progress, one slot per worker (the supervisor made the file)."""
        return CallCounts(call_counts_path(self.state_dir), self.count)

    def call_started(self, call_id: str) -> None:
        """Which worker, and which process, carries a new call (its CALL_START follows)."""
        log.info("CALL_WORKER call={call} worker={worker} pid={pid}", call=call_id, worker=self.index,
                 pid=os.getpid())

    # ---- readiness across workers ------------------------------------------------------
    def _state_file(self, index: int) -> str:
        return os.path.join(self.state_dir, f"worker-{index}")

    def publish_ready(self, ready: bool) -> None:
        path = self._state_file(self.index)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                f.write(f"{os.getpid()} {int(ready)}\n")
            os.replace(tmp, path)
        except OSError:
            log.failure("Cannot publish worker {index}'s readiness to {dir}", index=self.index, dir=self.state_dir)

    def workers_ready(self) -> int:
        """How many workers are up and ready (a dead worker's file is removed, or its pid is gone)."""
        count = 0
        for index in range(self.count):
            try:
                with open(self._state_file(index)) as f:
                    pid, ready = (int(x) for x in f.read().split())
                if ready:
                    os.kill(pid, 0)
                    count += 1
            except (OSError, ValueError):
                continue
        return count
