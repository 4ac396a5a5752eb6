"""``twistd voiced``: command-line options and makeService, the only wiring point.

Everything wrong with the configuration is reported here, before twistd forks into a
daemon: one line on stderr (``voiced: ...``) and exit status 1, in the foreground and
daemonized alike (after the fork, twistd can only relay 100 bytes of an error).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Mapping

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from voiced import preflight
from voiced.config import ConfigError, Settings
from voiced.options import OPTIONS
from voiced.reactor import install_unless_chosen

log = Logger(namespace="voiced.tap")

DAEMON_LOG_FILE = "voiced.log"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the voiced telephony voice-agent daemon. Every option has an environment twin "
        "VOICED_<NAME> (e.g. --eou-silence-ms and VOICED_EOU_SILENCE_MS); the command line wins."
    )
    # Defaults are None so that an absent option falls through to the environment.
    optParameters = [[o.flag, None, None, f"{o.help} [env {o.env}, default {o.default!r}]"]
                     for o in OPTIONS if not o.flag_only]
    optFlags = [[o.flag, None, f"{o.help} [env {o.env}=1]"] for o in OPTIONS if o.flag_only]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Endpoint string to listen on, repeatable (tcp:PORT, ssl:PORT:privateKey=...)
        [env VOICED_LISTEN, comma-separated; default tcp:8080:interface=127.0.0.1]"""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self) -> None:
        install_unless_chosen()  # (voiced.reactor) before twistd would install its default
        # An absent flag is 0: let the environment decide then.
        values = {o.name: (True if self[o.flag] else None) if o.flag_only else self[o.flag] for o in OPTIONS}
        values["listen"] = self["listen"]
        try:
            self["settings"] = Settings.load(values)
        except ConfigError as e:
            # One line, not twistd's usage text: the option and what is wrong with it.
            exit_on_config_error(str(e), daemon_log_file(self, values.get("log_file") or ""))


def exit_on_config_error(message: str, log_file: str = "") -> None:
    """Report a configuration error as one line on stderr (and in the daemon's log file) and exit 1."""
    line = f"voiced: configuration error: {message}"
    if log_file:
        try:
            with open(log_file, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError:
            pass  # stderr still has it
    raise SystemExit(line)


def checked_settings(settings: Settings, environ: Mapping[str, str] | None = None,
                     log_file: str = "") -> tuple[Settings, list[str]]:
    """Settings that passed every start-up check, and the warnings to log; exits on an error."""
    try:
        return settings, preflight.check(settings, environ)
    except ConfigError as e:
        exit_on_config_error(str(e), log_file or settings.log_file)
        raise  # not reached


def _daemonizing(options: Any) -> tuple[bool, str]:
    """Whether twistd will fork into a daemon, and its run directory."""
    server = getattr(options, "parent", None)
    if server is None:
        return False, "."
    return not (server.get("nodaemon") or server.get("debug")), server.get("rundir") or "."


def daemon_log_file(options: Any, log_file: str) -> str:
    """The log file: the one configured, else voiced.log in the run directory when twistd
    daemonizes (its stdout is /dev/null), else none (stdout)."""
    daemon, rundir = _daemonizing(options)
    if log_file or not daemon:
        return log_file
    return os.path.abspath(os.path.join(rundir, DAEMON_LOG_FILE))


def makeService(options: Any) -> IService:
    settings: Settings = options["settings"]
    # Log to the file from the first line, so twistd's start-up lines and any error land
    # there too, not on the terminal.
    settings = replace(settings, log_file=daemon_log_file(options, settings.log_file))
    settings, warnings = checked_settings(settings)
    if settings.workers > 1:
        from voiced.workers import WorkerSupervisor

        return WorkerSupervisor(settings, startup_warnings=warnings)
    from voiced.app import build

    return build(settings, startup_warnings=warnings)


def tac_settings(environ: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
    """Settings for voiced.tac, from the environment, with the same checks (and exit) as the plugin."""
    try:
        settings = Settings.load(None, environ)
    except ConfigError as e:
        exit_on_config_error(str(e))
    return checked_settings(settings, environ)
