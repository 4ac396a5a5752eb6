"""An incremental Server-Sent Events parser (the WHATWG ``text/event-stream`` format).

Bytes go in as they arrive from the network, in pieces of any size; complete events
come out. The stream is split into lines on ``\\r\\n``, ``\\n`` or a lone ``\\r``
*before* decoding: those bytes never occur inside a multi-byte UTF-8 sequence, so a
line is decoded only once it is whole, and a character split across two reads is
never mangled. A ``\\r`` at the end of one read and a ``\\n`` at the start of the next
make one line end.

Per line: a blank line dispatches the event being built (when it has data); a line
starting with ``:`` is a comment (servers send them as keep-alives); otherwise the
field name runs to the first ``:`` and one space after it is dropped. ``data`` lines
accumulate, joined with ``\\n``; ``event`` sets the type (default ``message``); ``id``
sets the last event id, which carries over to later events; ``retry`` and unknown
fields are ignored (this client does not reconnect). An event not terminated by a
blank line when the stream ends is dropped, as the spec says.

Memory is bounded: an incomplete line, or the data of one event, longer than
``max_bytes`` raises ``SSEError`` -- a peer cannot make the parser buffer without end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 1 << 20

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


class SSEError(ValueError):
    """The stream broke a limit; the connection should be dropped."""


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str = ""


class SSEParser:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._max_bytes = max_bytes
        self._partial = bytearray()  # the current line, not yet terminated
        self._skip_lf = False  # the previous read ended with \r: a leading \n is its pair
        self._first_line = True
        self._data: list[str] = []
        self._data_size = 0
        self._event_type = ""
        self._last_id = ""

    def feed(self, data: bytes) -> list[SSEEvent]:
        """The events completed by ``data``, in order."""
        if self._skip_lf and data:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(data):
            if self._partial:
                self._partial += data[start:match.start()]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = data[start:match.start()]
            self._check_size(len(line))
            self._line(line, events)
            start = match.end()
        if start < len(data):
            self._partial += data[start:]
            self._check_size(len(self._partial))
        elif data.endswith(b"\r"):
            # The regex took this \r as a line end on its own; its \n may come next.
            self._skip_lf = True
        return events

    def _check_size(self, size: int) -> None:
        if size > self._max_bytes:
            raise SSEError(f"an event-stream line is longer than {self._max_bytes} bytes")

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        if self._first_line:
            self._first_line = False
            if raw.startswith(_BOM):
                raw = raw[len(_BOM):]
        if not raw:
            self._dispatch(events)
            return
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(raw)
            self._check_size(self._data_size)
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        # "retry" and unknown fields: ignored.

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(SSEEvent("\n".join(self._data), self._event_type or "message", self._last_id))
        self._data = []
        self._data_size = 0
        self._event_type = ""
