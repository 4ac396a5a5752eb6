"""The signals an operator sends routinely, and what voiced does with each.

- SIGUSR1, SIGHUP: reopen the log file (logrotate's ``postrotate ... kill -USR1``);
  their default action would kill the daemon, and every call with it.
- SIGTERM, SIGINT: drain (``voiced.drain``): stop taking calls, let the ones in
  progress end, then stop the reactor. The reactor installs its own handlers when it
  starts running (after ``startService``), which would stop it at once and make
  twistd exit 143; ours are installed with ``reactor.callWhenRunning``, after the
  reactor's, so they replace them.

Handlers run on the main thread between bytecodes, possibly inside reactor code:
they only schedule work (``callFromThread``), never do it.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

#: Signals that reopen the log file.
REOPEN_LOG_SIGNALS = (signal.SIGUSR1, signal.SIGHUP)
#: Signals that drain the daemon (a second one stops it at once).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalHandlers:
    """Installs voiced's handlers; ``uninstall`` puts the previous ones back."""

    def __init__(self, reactor: Any, reopen_logs: Callable[[str], None],
                 stop: Callable[[str], None] | None = None) -> None:
        self._reactor = reactor
        self._reopen_logs = reopen_logs
        self._stop = stop
        self._previous: dict[int, Any] = {}
        self._installed = False

    def install(self) -> bool:
        """False (nothing installed) off the main thread, where Python refuses handlers."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in REOPEN_LOG_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_reopen_signal)
        self._installed = True
        if self._stop is not None:
            # After the reactor's own handlers, which it installs once it runs.
            self._reactor.callWhenRunning(self._install_stop_handlers)
        return True

    def _install_stop_handlers(self) -> None:
        if not self._installed:
            return  # uninstalled before the reactor ran
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_stop_signal)

    def uninstall(self) -> None:
        self._installed = False
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        assert self._stop is not None
        self._reactor.callFromThread(self._stop, signal.Signals(signum).name)

    def _on_reopen_signal(self, signum: int, _frame: Any) -> None:
        self._reactor.callFromThread(self._reopen_logs, signal.Signals(signum).name)
