"""``twistd voiced``: command-line options and makeService, the only wiring point."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from voiced.config import OPTIONS, ConfigError, Settings


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the voiced telephony voice-agent daemon. Every option has an environment twin "
        "VOICED_<NAME> (e.g. --eou-silence-ms and VOICED_EOU_SILENCE_MS); the command line wins."
    )
    # Defaults are None so that an absent option falls through to the environment.
    optParameters = [[o.flag, None, None, f"{o.help} [env {o.env}, default {o.default!r}]"] for o in OPTIONS]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Endpoint string to listen on, repeatable (tcp:PORT, ssl:PORT:privateKey=...)
        [env VOICED_LISTEN, comma-separated; default tcp:8080:interface=127.0.0.1]"""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self) -> None:
        values = {o.name: self[o.flag] for o in OPTIONS}
        values["listen"] = self["listen"]
        try:
            self["settings"] = Settings.load(values)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Any) -> IService:
    from voiced.service import VoicedService

    return VoicedService(options["settings"])

