"""What the daemon says of its own health: /health (liveness), /health/ready, /health/warmup.

Mixed into ``VoicedService`` (it reads the service's state, nothing else): a
supervisor restarts a process whose liveness says "unhealthy"; a load balancer
sends calls only where readiness says 200.
"""

from __future__ import annotations

import os
import time
from typing import Any

from voiced import __version__


class HealthReports:
    def liveness(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "ok",
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - (self.started_at or time.time()), 1),
            "active_calls": len(self.calls),
        }
        reason = self._unhealthy_reason()
        if reason:
            body.update(status="unhealthy", reason=reason)
        return body

    def _unhealthy_reason(self) -> str | None:
        """Why a supervisor should restart this process, if it should."""
        if self.warmup_fatal:
            return f"warm-up failed: {self.warmup_error}"
        if self.ready or self.stopping or self._started_clock is None:
            return None
        waited = self.clock.seconds() - self._started_clock
        if waited <= self.settings.warmup_timeout_s:
            return None
        last = f" (last error: {self.warmup_error})" if self.warmup_error else ""
        return f"not ready {self.settings.warmup_timeout_s} s after start{last}"

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ok, body = self._own_readiness()
        if self.worker is None:
            return ok, body
        ready_workers = self.worker.workers_ready()
        body["workers"] = {"ready": ready_workers, "of": self.worker.count, "this": self.worker.index}
        if ok and ready_workers < self.worker.count:
            body.update(ready=False, reason=f"{self.worker.count - ready_workers} of {self.worker.count} "
                                            "workers not ready")
            return False, body
        return ok, body

    def _own_readiness(self) -> tuple[bool, dict[str, Any]]:
        if self.ready:
            return True, {"ready": True, "active_calls": len(self.calls)}
        if self.drain.draining:
            reason = f"draining: {len(self.calls)} calls in progress"
        elif self.stopping:
            reason = "stopping"
        elif self.warmup_fatal:
            reason = f"warm-up failed: {self.warmup_error}"
        elif self.warmup_error:
            reason = f"warming up, retrying: {self.warmup_error}"
        else:
            reason = "warming up"
        return False, {"ready": False, "reason": reason}

    def warmup_report(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "tts_warmup_ms": self.tts_warmup_ms,
            "engines_ms": dict(self.engine_warmup_ms),
            "phrases_cached": len(self.speaker.cache) if self.speaker else 0,
            "phrases_on_fallback": len(self.speaker.on_fallback) if self.speaker else 0,
        }
