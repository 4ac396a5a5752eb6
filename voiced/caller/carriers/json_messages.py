"""Reading the daemon's messages on the JSON carriers (Twilio, Telnyx, Exotel, Plivo):
each a JSON text frame with an ``event`` and the stream's id, never raising on bad input.

Twilio, Telnyx and Exotel share their daemon-to-carrier messages too (``media{payload}``,
``mark{name}``, ``clear``): ``read_media_mark_clear`` reads those; the carrier says how
its ids are named and what its audio is.
"""

from __future__ import annotations

import binascii
import json
from typing import Any, Callable

from voiced.caller.carriers.base import Audio, Clear, DaemonEvent, Marker, Problem


def bad(reason: str) -> list[DaemonEvent]:
    return [Problem(f"daemon sent a bad message: {reason}")]


def open_message(data: bytes, is_binary: bool, carrier: str, id_keys: tuple[str, ...],
                 stream_id: str) -> tuple[dict[str, Any], str, list[DaemonEvent]] | list[DaemonEvent]:
    """The message, its event, and a Problem when it names another stream (the first of
    ``id_keys`` it has); or, for a message that is not one, the Problems that say why."""
    if is_binary:
        return [Problem(f"daemon sent a binary frame ({carrier} takes JSON text only)")]
    try:
        msg = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        return bad(f"not JSON: {str(e)[:100]}")
    event = msg.get("event") if isinstance(msg, dict) else None
    if not isinstance(event, str):
        return bad("message has no 'event'")
    events: list[DaemonEvent] = []
    key = next((k for k in id_keys if k in msg), id_keys[0])
    sid = msg.get(key)
    if sid is not None and sid != stream_id:
        events.append(Problem(f"daemon used {id_keys[0]} {sid!r}, not {stream_id!r}"))
    return msg, event, events


def _as_is(audio: bytes) -> list[DaemonEvent]:
    return [Audio(audio)]


def read_media_mark_clear(data: bytes, is_binary: bool, carrier: str, id_keys: tuple[str, ...], stream_id: str,
                          audio: Callable[[bytes], list[DaemonEvent]] = _as_is) -> list[DaemonEvent]:
    """The daemon's media, mark and clear as events; ``audio`` turns a media payload's bytes
    into events (default: 8 kHz mu-law as it is)."""
    opened = open_message(data, is_binary, carrier, id_keys, stream_id)
    if isinstance(opened, list):
        return opened
    msg, event, events = opened
    if event == "media":
        media = msg.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            return events + bad("media lacks 'payload'")
        try:
            raw = binascii.a2b_base64(payload, strict_mode=True)
        except (binascii.Error, ValueError):
            return events + bad("media payload is not base64")
        return events + audio(raw)
    if event == "mark":
        mark = msg.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str):
            return events + bad("mark lacks 'name'")
        return events + [Marker(name)]
    if event == "clear":
        return events + [Clear()]
    return events + [Problem(f"daemon sent a {event!r} message, which {carrier} does not accept")]
