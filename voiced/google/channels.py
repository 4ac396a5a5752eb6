"""gRPC channels to Google's speech APIs, and a pool that spreads streams over them.

One HTTP/2 connection carries about 100 concurrent streams, and channels with
identical options share one connection, so each pooled channel gets a distinct
``grpc.channel_pool_idx``. Keepalive pings keep idle connections warm (a cold TLS
handshake costs a turn ~100 ms) without pinging so often that Google answers
``too_many_pings``.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Sequence, TypeVar

import grpc
from google.api_core import grpc_helpers, grpc_helpers_async
from google.auth.credentials import Credentials
from twisted.logger import Logger

from voiced.config import Settings
# Re-exported: the checks live apart from grpc so start-up can run them before twistd forks.
from voiced.google.endpoint import check_endpoint, endpoint_host, is_loopback  # noqa: F401
from voiced.lifecycle import note_construction

SPEECH_TARGET = "speech.googleapis.com:443"
TTS_TARGET = "texttospeech.googleapis.com:443"
#: Half of a connection's ~100 streams: room for rollovers, which briefly hold two per call.
MAX_STREAMS_PER_CHANNEL = 50
KEEPALIVE_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # gRPC's own reconnect backoff starts at 1 s and grows to 120 s: after a reset
    # every RPC would fail fast for that long, longer than voiced's whole retry
    # budget (0.2 + 0.4 + 0.8 + 1.6 s). Keep reconnecting within that budget.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)

log = Logger()
T = TypeVar("T")


def open_channel(
    settings: Settings, credentials: Credentials | None, default_target: str, index: int, aio: bool = False
) -> Any:
    """One channel: plaintext to the emulator, else TLS with credentials to ``default_target``
    (or to --google-endpoint when set). ``aio``: a ``grpc.aio`` channel, opened on the event
    loop that will use it."""
    check_endpoint(settings)
    options = [*KEEPALIVE_OPTIONS, ("grpc.channel_pool_idx", index)]
    target = settings.google_endpoint or default_target
    if settings.google_insecure:
        channel = (grpc.aio.insecure_channel if aio else grpc.insecure_channel)(target, options=options)
    else:
        helpers = grpc_helpers_async if aio else grpc_helpers
        channel = helpers.create_channel(target, credentials=credentials, options=options)
    note_construction("google_channel")
    return channel


class Lease(Generic[T]):
    """One stream's use of a pooled client; release() is idempotent."""

    def __init__(self, pool: "ChannelPool[T]", index: int) -> None:
        self._pool = pool
        self.index = index
        self.client: T = pool._clients[index]
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self.index)


class ChannelPool(Generic[T]):
    """Clients over K channels; each stream leases the least-loaded one. Thread-safe.

    With ``open_channel`` the pool grows: a stream that would push every channel past
    ``max_per_channel`` gets a new channel (``open_channel(n)`` opens the n-th), so the
    streams in progress, not the configured count, size it. Channels are never closed
    before the pool is: a peak's connections stay warm for the next one.
    """

    def __init__(
        self,
        channels: Sequence[grpc.Channel],
        make_client: Callable[[grpc.Channel], T],
        max_per_channel: int = MAX_STREAMS_PER_CHANNEL,
        open_channel: Callable[[int], grpc.Channel] | None = None,
    ) -> None:
        if not channels:
            raise ValueError("a channel pool needs at least one channel")
        self._channels = list(channels)
        self._make_client = make_client
        self._clients = [make_client(c) for c in self._channels]
        self._loads = [0] * len(self._channels)
        self._max = max_per_channel
        self._open_channel = open_channel
        self._lock = threading.Lock()

    @property
    def loads(self) -> list[int]:
        with self._lock:
            return list(self._loads)

    def channel(self, index: int) -> Any:
        with self._lock:
            return self._channels[index]

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._channels)

    def acquire(self) -> Lease[T]:
        grown = 0
        with self._lock:
            index = min(range(len(self._loads)), key=self._loads.__getitem__)
            if self._loads[index] >= self._max and self._open_channel is not None:
                channel = self._open_channel(len(self._channels))  # lazy: connects when first used
                self._channels.append(channel)
                self._clients.append(self._make_client(channel))
                self._loads.append(0)
                index = grown = len(self._channels) - 1
            self._loads[index] += 1
            load = self._loads[index]
        if grown:
            log.info("google channel pool grown to {channels} channels ({max} streams each)",
                     channels=grown + 1, max=self._max)
        if load == self._max + 1:  # log the crossing, not every stream beyond it
            log.warn(
                "google channel pool over {max} streams per channel ({channels} channels): "
                "raise --google-channels",
                max=self._max,
                channels=len(self._channels),
            )
        return Lease(self, index)

    def _release(self, index: int) -> None:
        with self._lock:
            self._loads[index] -= 1

    async def close(self) -> None:
        """Close every channel (``grpc.aio``, on its loop): RPCs in flight end with CANCELLED."""
        for channel in self._channels:
            await channel.close()
