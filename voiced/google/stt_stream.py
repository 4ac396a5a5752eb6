"""One call's Google streaming recognition (``GoogleSTTStream``): the streams' lifecycle.

It takes the call's audio and VAD hints (the STTStream contract), opens a stream and
feeds it in batches, replaces it at a rollover or after a retryable failure (the new
one replays what is not settled), watches for a final owed after the caller's turn,
gives up to the fallback transcriber when retries run out, and degrades the call to
whole utterances when the service refuses it. What the results have settled and still
owe is the ``Ledger``'s (``voiced.google.stt_ledger``), the RPC is the ``Session``'s
(``voiced.google.stt_session``), the retry, give-up and degrade rules it shares with
Deepgram's are ``voiced.stt.recovery``'s; why it is built this way is in ``voiced.google.stt``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.api_core import exceptions as gexc
from google.cloud import speech_v1
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.audio import MULAW_8K, AudioFormat
from voiced.google.clients import is_transient
from voiced.google.stt_ledger import Ledger, RawResponse
from voiced.google.stt_session import HEALTHY_STREAM_S, Session as _Session
from voiced.stt.base import TranscriptListener
from voiced.stt.recovery import RecoveringSTTStream

if TYPE_CHECKING:
    from voiced.google.stt import GoogleSTTEngine

# The engine's namespace: a stream's lines read as voiced.google.stt's, as before the split.
log = Logger(namespace="voiced.google.stt")
_RESPONSE = speech_v1.StreamingRecognizeResponse

#: While the caller speaks ~400 ms per request (Google suggests 100 ms; every request costs
#: ~0.1 ms of CPU in grpc.aio, a third of a call's CPU at 200 ms): the pause hint and the
#: turn's end flush what is batched, and from then on audio goes frame by frame, so no final
#: waits for a batch. What a bigger batch delays is a partial, which nothing waits on.
REQUEST_MS = 400
#: Between utterances (no speech heard since the last flush) ~500 ms: no final can be owed
#: for audio the VAD heard no speech in (if it missed some, the final waits this much more).
IDLE_REQUEST_MS = 500
#: How long a rollover may wait for an utterance to end (Google's limit is ~65 s past 240 s).
ROLLOVER_GRACE_S = 45.0
#: After the caller's turn ends, a healthy stream answers within this; silence means a hung server.
RESPONSE_WATCHDOG_S = 3.0

_HINTS = {
    "InvalidArgument": "check --stt-model and --language (not every model supports every language)",
    "PermissionDenied": "check the service account's roles and that the Speech API is enabled",
    "Unauthenticated": "check the Google credentials",
    "NotFound": "check --stt-model and --google-endpoint",
}


class GoogleSTTStream(RecoveringSTTStream):
    """One call's recognition; every method runs on the reactor thread."""

    service = "Google"
    _session: _Session | None
    _ledger: Ledger

    def __init__(
        self, engine: GoogleSTTEngine, call_id: str, listener: TranscriptListener, audio: AudioFormat = MULAW_8K
    ) -> None:
        super().__init__(engine, engine.reactor, call_id, listener, audio, Ledger(audio), log,
                         request_ms=REQUEST_MS, idle_request_ms=IDLE_REQUEST_MS)
        self._reactor = engine.reactor  # also carries the responses from the speech loop

    # -- the STTStream contract ------------------------------------------------------------

    def flush(self) -> None:
        if self._closed:
            return
        speech_at = self._ledger.utterance_over()
        if self._local is not None:
            self._local.flush()
        elif self._degraded:
            # No fallback transcriber: a whole-utterance engine still owes one final per flush.
            self._listener.on_transcript("", True)
        else:
            owed = self._ledger.owe_final(speech_at)
            if self._session is not None:
                # The turn ended: nothing stays in a batch, owed or not (an end of utterance
                # shorter than the pause hint leaves the hint no frame to fire on).
                self._send_pending(self._session)
                if owed:
                    # (Keepalive would notice a hung server only after ~40 s.)
                    self._arm_watchdog(self._session, RESPONSE_WATCHDOG_S)

    def _retire_session(self) -> None:
        if self._session is not None:
            self._session.retire()

    # -- streams -----------------------------------------------------------------------------

    def _open_session(self) -> None:
        engine = self._engine
        clients = engine.clients
        session = _Session(clients.speech_loop, self._ledger.replay_start(), self._reactor.seconds(), self.format)
        self._session = session
        self.streams_opened += 1
        self._send_pending(session)  # the replay: everything not settled yet
        session.replayed_upto = session.sent_upto
        # A failure to start (clients stopped, the loop gone) ends it like a refused stream.
        d = clients.speech_loop.submit(
            session.run, clients.acquire_speech, engine.config_for(self.format), float(engine.settings.google_timeout_s),
            self._from_loop,
        )
        d.addBoth(self._session_ended, session)

    def _send_pending(self, session: _Session) -> None:
        audio = self._ledger.audio
        session.send(audio.since(session.sent_upto))
        session.sent_upto = audio.end

    def _from_loop(self, session: _Session, response: speech_v1.StreamingRecognizeResponse) -> None:
        if not session.retired:
            # The protobuf message under the proto-plus wrapper: read through the wrapper, a
            # response's few fields cost ~20 µs (each access converts), raw ~3 µs.
            self._reactor.callFromThread(self._on_response, session, _RESPONSE.pb(response))

    def _on_response(self, session: _Session, response: RawResponse) -> None:
        if self._closed or session is not self._session:
            return
        session.answered(self._reactor.seconds())
        ledger = self._ledger
        self._cancel_watchdog()
        if ledger.answered(session, response):
            # A final is progress; a partial is not (a stream that dies after each one
            # would otherwise retry for ever, replaying the whole utterance each time).
            session.finals += 1
            self._attempt = 0
        results = [r for r in response.results if r.alternatives]
        finals = [r for r in results if r.is_final]
        for result in finals:
            # Settled one at a time: a listener acting on this final sees the books as of it.
            self._listener.on_transcript(ledger.finalized(session, result), True)
            if self._closed or session is not self._session:
                return  # the listener hung up
        if not finals and results:
            partial = ledger.partial(results)
            if partial:
                self._listener.on_transcript(partial, False)
        self._rolled_over(session)

    def _no_response(self, session: _Session) -> None:
        self._watchdog = None
        if self._closed or session is not self._session:
            return
        session.retire()
        self._session = None
        self._retry_or_give_up("ResponseTimeout", f"no response within {RESPONSE_WATCHDOG_S:.0f} s of the caller's turn")

    def _rolled_over(self, session: _Session) -> bool:
        """Replace an old stream well before Google's 305 s limit, but never mid-utterance:
        right after a final, or in silence. The new stream replays the audio since the
        last final; the old one is retired, so its late results cannot repeat a final."""
        now = self._reactor.seconds()
        age = session.age(now)
        if age < self._engine.rollover_s or session.fresh_age(now) < HEALTHY_STREAM_S:
            # A stream whose replay alone is past the rollover age stays a while: its
            # successor would replay as much, and roll over at once, and again.
            return False
        # Not mid-utterance unless the hard limit is near.
        if self._ledger.mid_utterance and age < self._engine.rollover_s + ROLLOVER_GRACE_S:
            return False
        log.info("STT_ROLLOVER call={call_id} age_s={age:.0f}", call_id=self._call_id, age=age)
        session.retire()
        self._session = None
        self._open_session()
        return True

    def _session_ended(self, result: None | Failure, session: _Session) -> None:
        session.retire()
        if self._closed or session is not self._session:
            return  # retired on purpose: how it ended does not matter
        self._session = None
        now = self._reactor.seconds()
        healthy = session.healthy(now)
        if healthy:
            self._attempt = 0  # it worked for a while: this failure is a new one
        if not isinstance(result, Failure):
            if not healthy:
                self._retry_or_give_up("StreamEndedWithoutResult", "the stream ended without a final result")
            return  # the service ended a working stream: the next audio reopens one
        error = result.value
        if isinstance(error, gexc.OutOfRange) and (healthy or session.age(now) >= HEALTHY_STREAM_S):
            # Google's stream limits (max duration, audio timeout) on a stream that ran, even
            # one that only heard silence: not a failure. The next audio reopens a stream,
            # which replays what this one had not finalized. (Refused at once, e.g. "audio
            # streamed too fast", it goes through the backoff instead, or it would reopen 50
            # times a second.)
            self._attempt = 0
            log.info("STT_REOPEN call={call_id} reason={reason}", call_id=self._call_id, reason=error.message)
            # The limit itself, not Google's audio timeout ("Long duration elapsed without audio").
            if "stream duration" in (error.message or "").lower():
                self._engine.stream_limit_seen(session.age(now))
        elif is_transient(error) or session.responded or isinstance(error, (gexc.OutOfRange, gexc.Cancelled)):
            # After responses the configuration was accepted: whatever ended the stream
            # (a proxy's RST_STREAM shows as CANCELLED) is worth a new one.
            self._retry_or_give_up(type(error).__name__, str(error))
        else:
            self._degrade(type(error).__name__, str(error))

    # -- failure ------------------------------------------------------------------------------

    def _degrade(self, error: str, message: str) -> None:
        """A non-retryable error: report it once, then transcribe whole utterances for the rest of the call."""
        settings = self._engine.settings
        hint = _HINTS.get(error, "")
        reason = (
            f"Google STT refused the stream (model={settings.google_stt_model}, language={settings.language}): "
            f"{error}: {message}" + (f" -- {hint}" if hint else "")
        )
        self._degrade_call(reason)
