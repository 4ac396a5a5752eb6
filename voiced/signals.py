"""The signals an operator sends routinely, and what voiced does with each.

- SIGUSR1, SIGHUP: reopen the log file (logrotate's ``postrotate ... kill -USR1``);
  their default action would kill the daemon, and every call with it.
- SIGTERM, SIGINT: left to the reactor, which installs its own handlers when it
  starts running (after ``startService``) and stops. A handler that drains calls
  first belongs here: install it with ``reactor.callWhenRunning`` so it comes after
  the reactor's, and hand the work to the reactor thread with ``callFromThread``.

Handlers run on the main thread between bytecodes, possibly inside reactor code:
they only schedule work (``callFromThread``), never do it.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

#: Signals that reopen the log file.
REOPEN_LOG_SIGNALS = (signal.SIGUSR1, signal.SIGHUP)


class SignalHandlers:
    """Installs voiced's handlers; ``uninstall`` puts the previous ones back."""

    def __init__(self, reactor: Any, reopen_logs: Callable[[str], None]) -> None:
        self._reactor = reactor
        self._reopen_logs = reopen_logs
        self._previous: dict[int, Any] = {}

    def install(self) -> bool:
        """False (nothing installed) off the main thread, where Python refuses handlers."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in REOPEN_LOG_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_reopen_signal)
        return True

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _on_reopen_signal(self, signum: int, _frame: Any) -> None:
        self._reactor.callFromThread(self._reopen_logs, signal.Signals(signum).name)
