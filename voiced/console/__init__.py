"""The web console: a softphone, a live view of any call, and the calls with their turns.

``Console`` is a child service of ``VoicedService``. It decides at start-up whether the
console exists at all (``voiced.console.auth.console_mode``), serves ``/console`` on the
--listen site when it does, and admits the softphone's ``/media`` upgrades that carry a
token it minted. Its data comes from the service's ``CallHub``; it never touches a call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.application.service import Service
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from voiced.console.auth import (
    MEDIA_TOKEN_PARAM, OFF, SESSION_COOKIE, ConsoleAuth, MediaTokens, console_mode, cookie_value,
    why,
)
from voiced.console.calls import CallsView, HubRecentCalls, RecentCalls
from voiced.console.stream import CallEventStreams
from voiced.endpoints import endpoint_fields

if TYPE_CHECKING:
    from voiced.service import VoicedService

log = Logger(namespace="voiced.console")


def console_urls(listen: tuple[str, ...]) -> list[str]:
    """Where a browser on this machine finds the console, one per TCP/TLS endpoint."""
    urls = []
    for endpoint in listen:
        args, kwargs = endpoint_fields(endpoint)
        if len(args) < 2 or args[0] not in ("tcp", "tcp6", "ssl") or not args[1].isdigit():
            continue
        host = kwargs.get("interface") or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if args[0] == "ssl" else "http"
        urls.append(f"{scheme}://{host}:{args[1]}/console/phone")
    return urls


class Console(Service):
    name = "console"

    def __init__(self, service: "VoicedService", recent: RecentCalls | None = None) -> None:
        self.service = service
        self.clock = service.clock
        settings = service.settings
        self.mode = console_mode(settings)
        self.auth = ConsoleAuth(self.mode, settings.console_token)
        self.media_tokens = MediaTokens()
        self.static: dict[str, bytes] = {}
        self.streams: CallEventStreams | None = None
        # A journal, once there is one, passes itself as ``recent``.
        self.calls = CallsView(service.call_hub, recent or HubRecentCalls(service.call_hub), self._live_states,
                               self.clock.seconds, settings.language,
                               dial_of=lambda dial_id: service.dialer.snapshot(dial_id) if service.dialer else None)
        if self.mode != OFF:
            from voiced.console.resources import load_static

            self.static = load_static()
            self.streams = CallEventStreams(service.call_hub, self.clock, language=settings.language)

    @property
    def enabled(self) -> bool:
        return self.mode != OFF

    def resource(self) -> Resource | None:
        """The /console tree, or None when the console is off (then /console is a 404)."""
        if not self.enabled:
            return None
        from voiced.console.resources import ConsoleRoot

        return ConsoleRoot(self)

    def startService(self) -> None:
        super().startService()
        urls = " ".join(console_urls(self.service.settings.listen)) if self.enabled else "-"
        log.info("CONSOLE {mode} url={url}: {why}", mode=self.mode, url=urls, why=why(self.mode))

    def stopService(self) -> None:
        super().stopService()
        if self.streams is not None:
            self.streams.close()

    # ---- who may look -------------------------------------------------------------------
    def check(self, request: Request) -> int:
        authorization = request.getHeader(b"authorization")
        cookie = cookie_value((request.getHeader(b"cookie") or b"").decode("latin-1"), SESSION_COOKIE)
        return self.auth.check(authorization.decode("latin-1") if authorization else None, cookie,
                               self.clock.seconds())

    # ---- the softphone's media socket -------------------------------------------------------
    def offers_media_token(self, request: ConnectionRequest) -> bool:
        return self.enabled and MEDIA_TOKEN_PARAM in (request.params or {})

    def admit_media(self, request: ConnectionRequest) -> None:
        """Raise ConnectionDeny(403) unless the upgrade carries a valid, unexpired,
        unused token this console minted. The token is never logged."""
        values = request.params.get(MEDIA_TOKEN_PARAM) or [""]
        problem = self.media_tokens.redeem(values[0], self.clock.seconds()) if len(values) == 1 else "repeated"
        if problem is not None:
            log.warn("MEDIA_REJECTED: console media token {problem} from {peer}", problem=problem, peer=request.peer)
            raise ConnectionDeny(403, "invalid console media token")

    # ---- data -------------------------------------------------------------------------------
    def recording_file(self, call_sid: str) -> str | None:
        """The recording of a live or recent call, if calls are recorded and its file is there."""
        recordings = getattr(self.service, "recordings", None)
        record = self.calls.record(call_sid)
        if recordings is None or record is None:
            return None
        path: str | None = recordings.readable(record.recording)
        return path

    def _live_states(self) -> dict[str, str]:
        """Each live call's turn-machine state, by CallSid (read, never changed)."""
        states = {}
        for call in list(getattr(self.service, "calls", ())):
            state: Any = getattr(call, "state", None)
            states[getattr(call, "call_id", "")] = getattr(state, "name", str(state)).lower()
        return states
