"""The console's twisted.web resources, mounted at /console on the --listen site.

    /console/                      -> redirect to /console/phone
    /console/phone                 the softphone (static/phone.html)
    /console/calls                 live and recent calls (static/calls.html; ?call=SID opens one)
    /console/login                 GET: the form; POST token=...: sets the session cookie
    /console/static/<file>         the pages' JS, CSS and worklets (package data, read once)
    /console/api/calls             JSON: {"live": [...], "recent": [...]}
    /console/api/calls/<sid>       JSON: one call's summary and whole record
    /console/api/calls/<sid>/events  SSE: that call's events (see voiced.console.stream)
    /console/api/calls/<sid>/recording  the call's recording (audio/wav, Range requests), 404 when none
    /console/api/events            SSE: every call's events
    /console/api/media-token       POST: a short-lived token for the softphone's /media upgrade

Every route but the login form (and the stylesheet it uses) passes ``ConsoleAuth``
first: 401 without a credential, 403 with a wrong one. Nothing here blocks on more than a
stat: files are read at start-up, the JSON is built from records already in memory, and a
recording is streamed by twisted's static.File, a piece at a time.
"""

from __future__ import annotations

import html
import json
from importlib import resources as package_files
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.static import File

from voiced.console.auth import SESSION_COOKIE, SESSION_TTL_S, safe_next

if TYPE_CHECKING:
    from voiced.console import Console

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}
# No inline script or style anywhere, and nothing from another origin (no CDN).
# 'self' covers the same host's ws:/wss: in CSP 3 (the softphone's /media socket).
CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       b"connect-src 'self'; media-src 'self' blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PUBLIC_PATHS = {(b"login",), (b"static", b"console.css")}


def load_static() -> dict[str, bytes]:
    """Every file under voiced/console/static, read once (before twistd forks)."""
    root = package_files.files("voiced.console") / "static"
    return {entry.name: entry.read_bytes() for entry in root.iterdir() if entry.is_file()}


def _headers(request: Request, content_type: bytes, cache: bytes = b"no-store") -> None:
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"cache-control", cache)
    request.setHeader(b"content-security-policy", CSP)
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"permissions-policy", b"microphone=(self)")


def _json(request: Request, body: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    _headers(request, b"application/json")
    return json.dumps(body, default=str).encode() + b"\n"


def _content_type(name: str) -> bytes:
    return next((t for ext, t in CONTENT_TYPES.items() if name.endswith(ext)), b"application/octet-stream")


class _Leaf(Resource):
    isLeaf = True

    def __init__(self, console: "Console") -> None:
        super().__init__()
        self.console = console


class Denied(Resource):
    """401 (no credential) or 403 (a wrong one). A browser asking for a page gets the
    login form; anything else gets JSON and a WWW-Authenticate challenge."""

    isLeaf = True

    def __init__(self, console: "Console", status: int, is_api: bool) -> None:
        super().__init__()
        self.console, self.status, self.is_api = console, status, is_api

    def render(self, request: Request) -> bytes:
        if self.status == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="voiced console"')
        wants_page = b"text/html" in (request.getHeader(b"accept") or b"") and not self.is_api
        if request.method == b"GET" and wants_page:
            request.setResponseCode(self.status)
            return LoginPage.form(self.console, request, request.uri.decode("utf-8", "replace"),
                                  "Wrong or expired credential." if self.status == 403 else "")
        return _json(request, {"error": "console token required" if self.status == 401 else "forbidden"},
                     self.status)


class ConsoleRoot(Resource):
    def __init__(self, console: "Console") -> None:
        super().__init__()
        self.console = console
        self.putChild(b"phone", StaticPage(console, "phone.html"))
        self.putChild(b"calls", StaticPage(console, "calls.html"))
        self.putChild(b"login", LoginPage(console))
        self.putChild(b"static", StaticFiles(console))
        api = Resource()
        api.putChild(b"calls", CallsApi(console))
        api.putChild(b"events", EventsApi(console))
        api.putChild(b"media-token", MediaTokenApi(console))
        self.putChild(b"api", api)

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        wanted = (path, *request.postpath[:1]) if path == b"static" else (path,)
        if wanted not in PUBLIC_PATHS:
            status = self.console.check(request)
            if status != 200:
                return Denied(self.console, status, is_api=path == b"api")
        if path == b"":
            return Redirect(b"/console/phone")
        return super().getChildWithDefault(path, request)

    def render_GET(self, request: Request) -> bytes:  # /console without the slash
        request.redirect(b"/console/phone")
        return b""


class Redirect(Resource):
    isLeaf = True

    def __init__(self, to: bytes) -> None:
        super().__init__()
        self.to = to

    def render(self, request: Request) -> bytes:
        request.redirect(self.to)
        return b""


class StaticPage(_Leaf):
    def __init__(self, console: "Console", name: str) -> None:
        super().__init__(console)
        self.name = name

    def render_GET(self, request: Request) -> bytes:
        _headers(request, CONTENT_TYPES[".html"], b"no-cache")
        return self.console.static[self.name]


class StaticFiles(_Leaf):
    def render_GET(self, request: Request) -> bytes:
        name = b"/".join(request.postpath).decode("utf-8", "replace")
        body = self.console.static.get(name)
        if body is None or name.endswith(".html"):  # pages have their own routes
            return _json(request, {"error": "not found"}, 404)
        _headers(request, _content_type(name), b"no-cache")
        return body


class LoginPage(_Leaf):
    @staticmethod
    def form(console: "Console", request: Request, next_path: str, message: str) -> bytes:
        _headers(request, CONTENT_TYPES[".html"])
        page = console.static["login.html"].decode()
        page = page.replace("{{next}}", html.escape(safe_next(next_path), quote=True))
        return page.replace("{{message}}", html.escape(message)).encode()

    def render_GET(self, request: Request) -> bytes:
        return self.form(self.console, request, _arg(request, b"next"), "")

    def render_POST(self, request: Request) -> bytes:
        form = parse_qs(request.content.getvalue().decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0]
        next_path = safe_next((form.get("next") or [""])[0])
        if self.console.mode == "open":
            request.redirect(next_path.encode())
            return b""
        if not self.console.auth.token_matches(token):
            request.setResponseCode(403)
            return self.form(self.console, request, next_path, "Wrong token.")
        secure = request.isSecure() or request.getHeader(b"x-forwarded-proto") == b"https"
        request.addCookie(SESSION_COOKIE, self.console.auth.new_session(self.console.clock.seconds()).encode(),
                          path=b"/console", max_age=str(SESSION_TTL_S).encode(), httpOnly=True,
                          secure=secure, sameSite="strict")
        request.setResponseCode(303)
        request.setHeader(b"location", next_path.encode())
        return b""


def _arg(request: Request, name: bytes) -> str:
    values = request.args.get(name) or [b""]
    return values[0].decode("utf-8", "replace")


class CallsApi(_Leaf):
    def render_GET(self, request: Request) -> bytes | int:
        parts = [p.decode("utf-8", "replace") for p in request.postpath if p]
        view = self.console.calls
        if not parts:
            return _json(request, view.table())
        if len(parts) == 1:
            body = view.call(parts[0])
            return _json(request, body, 200) if body else _json(request, {"error": "no such call"}, 404)
        if len(parts) == 2 and parts[1] == "events":
            return _open_stream(self.console, request, parts[0])
        if len(parts) == 2 and parts[1] == "recording":
            return _recording(self.console, request, parts[0])
        return _json(request, {"error": "not found"}, 404)


class EventsApi(_Leaf):
    def render_GET(self, request: Request) -> bytes | int:
        return _open_stream(self.console, request, None)


def _recording(console: "Console", request: Request, call_sid: str) -> bytes | int:
    """The call's WAV file as far as it is written (a live call's too): static.File answers
    Range requests, so the player seeks without downloading the whole call."""
    path = console.recording_file(call_sid)
    if path is None:
        return _json(request, {"error": "no recording of this call"}, 404)
    for name, value in ((b"content-security-policy", CSP), (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store")):
        request.setHeader(name, value)
    audio = File(path, defaultType="audio/wav")
    return audio.render(request)


def _open_stream(console: "Console", request: Request, call_sid: str | None) -> bytes | int:
    request.setResponseCode(200)
    _headers(request, b"text/event-stream; charset=utf-8")
    request.setHeader(b"x-accel-buffering", b"no")  # nginx: do not hold events back

    def abort() -> None:
        transport = getattr(request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()  # a stuck viewer's buffer is freed now, not at its pace

    if console.streams.open(request, call_sid, abort) is None:
        return _json(request, {"error": "too many console streams open"}, 503)
    return NOT_DONE_YET


class MediaTokenApi(_Leaf):
    def render_POST(self, request: Request) -> bytes:
        origin = request.getHeader(b"origin")
        host = request.getHeader(b"host") or b""
        # A cross-site page cannot mint tokens with the operator's cookie (SameSite also says so).
        if origin and origin != b"null" and urlsplit(origin.decode("utf-8", "replace")).netloc.encode() != host:
            return _json(request, {"error": "cross-origin request"}, 403)
        token = self.console.media_tokens.mint(self.console.clock.seconds())
        return _json(request, {"token": token, "param": "console_token",
                               "expires_in_s": self.console.media_tokens.ttl_s})
