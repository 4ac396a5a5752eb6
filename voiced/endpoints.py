"""Reading the listen endpoint strings: which ones only this machine can reach.

Decides what may run without credentials: the console and any carrier whose secret
is not set are open only while every --listen endpoint is loopback (or a UNIX socket).
"""

from __future__ import annotations

import ipaddress
from typing import Iterable


def endpoint_fields(description: str) -> tuple[list[str], dict[str, str]]:
    """Split a strports description on unescaped colons (``tcp6:80:interface=\\:\\:1``)."""
    parts, current, escaped = [], "", False
    for char in description:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    args = [p for p in parts if "=" not in p]
    kwargs = dict(p.split("=", 1) for p in parts if "=" in p)
    return args, kwargs


def is_loopback_endpoint(description: str) -> bool:
    """True when the endpoint accepts connections from this machine only."""
    args, kwargs = endpoint_fields(description.strip())
    kind = args[0].lower() if args else ""
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False  # an endpoint we cannot reason about is treated as public
    host = kwargs.get("interface", "")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # no interface: every address


def loopback_only(endpoints: Iterable[str]) -> bool:
    """Every endpoint accepts connections from this machine only."""
    return all(is_loopback_endpoint(e) for e in endpoints)
