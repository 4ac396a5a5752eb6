"""One Google streaming_recognize RPC (``Session``) and a call's recent audio (``AudioLog``).

``voiced.google.stt`` decides when a stream is opened, replaced or given up on; this
module is the stream itself: its requests (fed from the reactor, read by gRPC's request
thread), its worker thread's blocking loop over the responses, and a retire() that
frees that thread at once, even before the server has answered anything.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import grpc
from google.api_core import exceptions as gexc
from google.cloud import speech_v1
from google.cloud.speech_v1.services.speech.transports.base import DEFAULT_CLIENT_INFO

from voiced.audio import SAMPLE_RATE
from voiced.google.channels import Lease

#: Replays go in bigger requests (Google takes up to 25 KB each).
REPLAY_REQUEST_BYTES = SAMPLE_RATE // 2
#: Dead audio is cut off the buffer in slices, not per frame (a bytearray shifts on every cut).
_TRIM_SLACK_BYTES = SAMPLE_RATE
#: A stream that went on answering this long after its first response proved the service
#: works (longer than any replay takes to fail): its failure starts a fresh retry budget.
HEALTHY_STREAM_S = 5.0
#: What the client library's wrapper would send with each call (telemetry only).
_CLIENT_METADATA = (DEFAULT_CLIENT_INFO.to_grpc_metadata(),)


class Session:
    """One streaming_recognize call. Fields without a lock belong to the reactor thread."""

    def __init__(self, lease: Lease[speech_v1.SpeechClient], base: int, opened_at: float) -> None:
        self.lease = lease
        self.base = base  # absolute offset of this stream's first audio byte
        self.sent_upto = base
        self.opened_at = opened_at
        self.responded = False
        self.finals = 0
        self._first_response: tuple[float, int] | None = None  # (clock time, sent_upto) of the first answer
        self._requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._call: grpc.Call | None = None  # the RPC, once started: what retire() cancels
        self._retired = False

    def send(self, audio: bytes) -> None:
        for i in range(0, len(audio), REPLAY_REQUEST_BYTES):
            self._requests.put(audio[i : i + REPLAY_REQUEST_BYTES])

    def requests(self, config: speech_v1.StreamingRecognitionConfig) -> Iterator[speech_v1.StreamingRecognizeRequest]:
        """gRPC's request thread: the config, then audio until the half-close marker."""
        yield speech_v1.StreamingRecognizeRequest(streaming_config=config)
        while (audio := self._requests.get()) is not None:
            yield speech_v1.StreamingRecognizeRequest(audio_content=audio)

    def run(self, config, timeout: float, deliver) -> None:
        """Worker thread: the whole life of the stream. Raises what the stream ended with."""
        if self.retired:
            return  # closed while waiting for a worker: never open it
        # The stub itself, not SpeechClient.streaming_recognize: that one blocks until the
        # first response (and would retry from a half-consumed request generator). The stub
        # returns the call at once, so a retire() from now on reaches it.
        stub = self.lease.client.transport.streaming_recognize
        call = stub(self.requests(config), timeout=timeout, metadata=_CLIENT_METADATA)
        with self._lock:
            self._call = call
            retired = self._retired
        if retired:
            call.cancel()
        try:
            for response in call:
                deliver(self, response)
        except grpc.RpcError as e:
            raise gexc.from_grpc_error(e) from e

    def answered(self, now: float) -> None:
        self.responded = True
        if self._first_response is None:
            self._first_response = (now, self.sent_upto)

    def age(self, now: float) -> float:
        """Wall or audio time since the stream opened, whichever is more (as for rollover)."""
        return max(now - self.opened_at, (self.sent_upto - self.base) / SAMPLE_RATE)

    def healthy(self, now: float) -> bool:
        """Real progress: a final, or answers for HEALTHY_STREAM_S (wall or audio time,
        as for rollover: a test sends audio faster than real time)."""
        if self.finals:
            return True
        if self._first_response is None:
            return False
        at, upto = self._first_response
        return max(now - at, (self.sent_upto - upto) / SAMPLE_RATE) >= HEALTHY_STREAM_S

    @property
    def retired(self) -> bool:
        with self._lock:
            return self._retired

    def retire(self) -> None:
        """Half-close, then cancel: the worker returns promptly; nothing it yields is used.

        The call object exists as soon as run() has started the RPC; retired before
        that, run() cancels it the moment it exists (or never starts it).
        """
        with self._lock:
            self._retired = True
            call = self._call
        self._requests.put(None)
        if call is not None:
            call.cancel()


class AudioLog:
    """The call's recent audio, addressed by absolute offsets since the call began."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + len(self._buf)

    def append(self, audio: bytes) -> None:
        self._buf += audio

    def since(self, offset: int) -> bytes:
        return bytes(self._buf[max(offset, self.start) - self.start :])

    def forget_before(self, offset: int) -> None:
        if offset - self.start >= _TRIM_SLACK_BYTES:
            cut = min(offset - self.start, len(self._buf))
            del self._buf[:cut]
            self.start += cut
