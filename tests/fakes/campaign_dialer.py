"""An in-test implementation of the ``Dialer`` protocol campaigns use (voiced.outbound.campaign),
over an in-test ``Carrier`` that outlives the daemon's objects (as Twilio outlives a SIGKILL).

    carrier = Carrier()
    dialer = InTestDialer(carrier, clock, plan=lambda request: [(30.0, "completed")])

``plan(request)`` says what becomes of each call: a list of ``(seconds after acceptance,
status)`` the carrier then reports; or an exception ``dial`` fails with; or ``HOLD`` (the
carrier creates the call but its REST answer never comes back: a kill mid-request) or
``LOST`` (the request never reaches the carrier). dial21's real Dialer replaces this at merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, succeed

from voiced.outbound.campaign_protocol import FINAL_STATUSES, dial_key

HOLD, LOST = "hold", "lost"


@dataclass(frozen=True)
class DialRequest:
    """The contract's DialRequest fields (voiced.outbound.request is dial21's)."""

    to: str
    variables: dict[str, str]
    from_number: str = ""
    machine_detection: bool = False
    campaign_id: str = ""


def make_request(to: str, variables: dict[str, str], settings: Any, key: str) -> DialRequest:
    return DialRequest(to, dict(variables), settings.from_number, settings.machine_detection, key)


class CarrierRefused(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class CarrierCall:
    dial_id: str
    request: DialRequest
    created_at: float
    status: str = "queued"
    history: list[str] = field(default_factory=list)


class Carrier:
    """What the carrier knows: every call it created, by dial id and by campaign key."""

    def __init__(self) -> None:
        self.calls: dict[str, CarrierCall] = {}
        self.by_key: dict[str, str] = {}

    def create(self, request: DialRequest, at: float) -> CarrierCall:
        dial_id = f"d-{len(self.calls) + 1:016x}"
        call = CarrierCall(dial_id, request, at)
        self.calls[dial_id] = call
        if request.campaign_id:
            self.by_key[request.campaign_id] = dial_id
        return call

    def calls_to(self, number: str) -> list[CarrierCall]:
        return [c for c in self.calls.values() if c.request.to == number]

    def live(self) -> list[CarrierCall]:
        return [c for c in self.calls.values() if c.status not in FINAL_STATUSES]


class InTestDialer:
    def __init__(self, carrier: Carrier, clock: Any,
                 plan: Callable[[DialRequest], Any] = lambda request: []) -> None:
        self.carrier = carrier
        self.clock = clock
        self.plan = plan
        self.listeners: list[Callable[[str, str], None]] = []
        self.requests: list[tuple[float, DialRequest]] = []
        self.live_peak = 0
        self.held: list[Deferred[str]] = []
        self.unreachable = 0  # lookups (find_dial, dial_status) that fail: the carrier's API is down

    def dial(self, request: DialRequest, ready: Callable[[], Deferred[None]] | None = None) -> Deferred[str]:
        if ready is not None:  # the campaign's send slot, as the Dialer waits for it
            return ready().addCallback(lambda _: self._dial(request))
        return self._dial(request)

    def _dial(self, request: DialRequest) -> Deferred[str]:
        self.requests.append((self.clock.seconds(), request))
        plan = self.plan(request)
        if isinstance(plan, Exception):
            return fail(plan)
        if plan == LOST:
            held: Deferred[str] = Deferred()
            self.held.append(held)
            return held
        call = self.carrier.create(request, self.clock.seconds())
        self.live_peak = max(self.live_peak, len(self.carrier.live()))
        if plan == HOLD:
            held = Deferred()
            self.held.append(held)
            return held
        for delay, status in plan:
            self.clock.callLater(delay, self.report, call.dial_id, status)
        return succeed(call.dial_id)

    def report(self, dial_id: str, status: str) -> None:
        call = self.carrier.calls[dial_id]
        if call.status in FINAL_STATUSES:
            return  # a carrier reports one end
        call.status = status
        call.history.append(status)
        for listener in list(self.listeners):
            listener(dial_id, status)

    def add_status_listener(self, listener: Callable[[str, str], None]) -> None:
        self.listeners.append(listener)

    def _down(self) -> bool:
        if self.unreachable:
            self.unreachable -= 1
            return True
        return False

    def find_dial(self, campaign_id: str, row_no: int, attempt: int) -> Deferred[str | None]:
        if self._down():
            return fail(ConnectionRefusedError("the carrier's API is unreachable"))
        return succeed(self.carrier.by_key.get(dial_key(campaign_id, row_no, attempt)))

    def dial_status(self, dial_id: str) -> Deferred[str | None]:
        if self._down():
            return fail(ConnectionRefusedError("the carrier's API is unreachable"))
        call = self.carrier.calls.get(dial_id)
        return succeed(None if call is None else call.status)
