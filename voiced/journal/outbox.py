"""Delivery of call records to the user's application: an outbox over the journal.

A record is committed first and POSTed after, so a crash between the two loses
nothing: it is still marked undelivered (``delivered_at IS NULL``) and the next sweep
sends it, at start-up included. Each POST carries the record as JSON, signed like the
agent webhook (``X-Voiced-Signature``), and is retried with backoff on a connection
failure, a timeout or a 5xx. When the retries run out the sweep stops (the receiver
is down: the next sweep starts again from the oldest record); a 4xx is the receiver
refusing that one record: it stays undelivered with its error and the sweep goes on.
Delivery is at least once: a receiver that must not see a record twice dedupes on
``call_sid`` and ``started_at``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.httpbody import read_body_prefix
from voiced.journal.writer import JournalWriter
from voiced.retry import Backoff, retry
from voiced.signing import SIGNATURE_HEADER, sign

log = Logger(namespace="voiced.journal")

DELIVERY_RETRY = Backoff(1.0, 30.0, attempts=5, jitter=0.1)
SWEEP_INTERVAL_S = 30.0  # how often undelivered records are tried again
POST_TIMEOUT_S = 10.0
BATCH = 50
MAX_ERROR_BODY = 200


class DeliveryError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Outbox:
    def __init__(self, journal: JournalWriter, http: Any, clock: Any, url: str, secret: str,
                 policy: Backoff = DELIVERY_RETRY, sweep_interval_s: float = SWEEP_INTERVAL_S,
                 timeout_s: float = POST_TIMEOUT_S) -> None:
        self._journal = journal
        self._http = http
        self._clock = clock
        self.url = url
        self._secret = secret
        self._policy = policy
        self._timeout_s = timeout_s
        self._sweeps = LoopingCall(self.kick)
        self._sweeps.clock = clock
        self._sweep_interval_s = sweep_interval_s
        self._sweep: Deferred[None] | None = None
        self._again = False
        self.delivered = 0

    def start(self) -> None:
        """Sweep now (what a previous run left undelivered) and every ``sweep_interval_s``."""
        self._sweeps.start(self._sweep_interval_s, now=True)

    def stop(self) -> None:
        if self._sweeps.running:
            self._sweeps.stop()
        if self._sweep is not None:
            self._sweep.cancel()  # what was not marked delivered is sent again after the restart

    @property
    def sweeping(self) -> bool:
        return self._sweep is not None

    def kick(self, _row_id: object = None) -> None:
        """A record was committed (or the sweep is due): deliver what is undelivered."""
        if self._sweep is not None:
            self._again = True  # the running sweep goes round once more
            return
        self._sweep = Deferred.fromCoroutine(self._run())
        self._sweep.addErrback(self._sweep_failed).addBoth(self._sweep_done)

    def _sweep_done(self, _: object) -> None:
        self._sweep = None

    def _sweep_failed(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            log.failure("Call record delivery sweep failed", failure)

    async def _run(self) -> None:
        while True:
            self._again = False
            if not await self._sweep_once():
                return  # the receiver is down: the next timed sweep tries again
            if not self._again:
                return

    async def _sweep_once(self) -> bool:
        after = 0
        while True:
            rows = await self._journal.undelivered(after, BATCH)
            if not rows:
                return True
            for row_id, call_sid, body in rows:
                after = row_id
                if not await self._deliver(row_id, call_sid, body.encode("utf-8")):
                    return False

    async def _deliver(self, row_id: int, call_sid: str, body: bytes) -> bool:
        """False when the receiver could not be reached (stop the sweep)."""
        def on_retry(attempt: int, delay: float, failure: Failure) -> None:
            log.warn("CALL_WEBHOOK_RETRY call={call} attempt={attempt} delay_s={delay}: {error}", call=call_sid,
                     attempt=attempt, delay=round(delay, 1), error=failure.getErrorMessage())

        try:
            await retry(self._clock, lambda attempt: Deferred.fromCoroutine(self._post(body)), self._policy,
                        is_retryable=lambda f: not f.check(DeliveryError) or f.value.retryable, on_retry=on_retry)
        except CancelledError:
            raise
        except Exception as e:
            error = str(e) or type(e).__name__
            retryable = not isinstance(e, DeliveryError) or e.retryable
            log.warn("CALL_WEBHOOK_FAILED call={call}: {error}; kept undelivered in the journal", call=call_sid,
                     error=error)
            await self._journal.mark_failed(row_id, error)
            return not retryable
        await self._journal.mark_delivered(row_id, self._clock.seconds())
        self.delivered += 1
        log.info("CALL_DELIVERED call={call} id={id}", call=call_sid, id=row_id)
        return True

    async def _post(self, body: bytes) -> None:
        headers = {b"Content-Type": [b"application/json"], b"User-Agent": [b"voiced"]}
        if self._secret:
            headers[SIGNATURE_HEADER.encode()] = [sign(self._secret, body).encode()]
        posted = self._http.post(self.url, data=body, headers=headers, unbuffered=True, allow_redirects=False)
        posted.addTimeout(self._timeout_s, self._clock)
        response = await posted
        # Drained (bounded) so that the pooled connection can be reused.
        text = (await read_body_prefix(response, MAX_ERROR_BODY)).decode("utf-8", "replace").strip()
        if 200 <= response.code < 300:
            return
        detail = f": {text[:MAX_ERROR_BODY]}" if text else ""
        raise DeliveryError(f"HTTP {response.code}{detail}", retryable=response.code >= 500 or response.code == 429)
