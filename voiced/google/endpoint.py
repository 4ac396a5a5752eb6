"""Where the Google speech APIs are, and whether plaintext to there is allowed.

Kept free of grpc imports: start-up checks run before twistd forks, and gRPC is
only loaded after the fork (see voiced.preflight).
"""

from __future__ import annotations

import ipaddress

from voiced.config import ConfigError, Settings


def endpoint_host(endpoint: str) -> str:
    """The host of ``host:port`` or ``[v6]:port``."""
    if endpoint.startswith("["):
        return endpoint[1 : endpoint.find("]")]
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a DNS name: never resolved here, so never trusted


def check_endpoint(settings: Settings) -> None:
    """Refuse plaintext gRPC (audio and text in clear) to anything but loopback, unless asked."""
    if settings.google_insecure and not settings.google_endpoint:
        raise ConfigError("--google-insecure needs --google-endpoint (the emulator's host:port)")
    if settings.google_insecure and not settings.google_insecure_remote:
        host = endpoint_host(settings.google_endpoint)
        if not is_loopback(host):
            raise ConfigError(
                f"refusing plaintext gRPC to non-loopback host {host!r} "
                "(callers' audio would cross the network unencrypted); "
                "use TLS, or set --google-insecure-remote if you really mean it"
            )
