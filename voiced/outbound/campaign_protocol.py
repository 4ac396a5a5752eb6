"""What a campaign needs of the rest of voiced: the ``Dialer`` (dial21's
``voiced.outbound.dialer.Dialer`` implements it) and the ``RowStore`` (``CampaignStore``),
and how a campaign's dial is named (``dial_key``) so that it can be found after a kill."""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred

from voiced.outbound.campaign_settings import CampaignSettings

# The contract's final dial statuses ("answered" is Twilio's in-progress, not final).
FINAL_STATUSES = frozenset({"busy", "no-answer", "failed", "canceled", "completed"})


class Dialer(Protocol):
    """What a campaign needs of ``voiced.outbound.dialer.Dialer`` (dial21)."""

    def dial(self, request: Any, ready: "Callable[[], Deferred[None]] | None" = None) -> "Deferred[str]":
        """Fires with the dial id once the carrier accepted the call. ``ready`` is called when the
        dial is recorded, and the carrier is asked when its Deferred fires (the campaign's cps). A failure whose exception
        has ``retryable = True`` promises the carrier created no call (a refused connection, a 429
        or 503): the row may be tried again. Any other failure ends the row ``failed``."""

    def add_status_listener(self, listener: Callable[[str, str], None]) -> None: ...

    def find_dial(self, campaign_id: str, row_no: int, attempt: int) -> "Deferred[str | None]":
        """The dial id of the call requested for ``dial_key(campaign_id, row_no, attempt)``, or
        None when the carrier has no such call (only then is the row dialled again)."""

    def dial_status(self, dial_id: str) -> "Deferred[str | None]":
        """The dial's status now (one of DIAL_STATUSES), asking the carrier if the journal's is
        not final; None for a dial id it does not know."""


class RowStore(Protocol):
    """The statements a campaign commits (``voiced.outbound.campaign_store.CampaignStore``)."""

    def mark_dialling(self, campaign_id: str, row_no: int, attempt: int) -> "Deferred[None]": ...
    def mark_active(self, campaign_id: str, row_no: int, dial_id: str) -> "Deferred[None]": ...
    def mark_pending(self, campaign_id: str, row_no: int, attempts: int, next_at: float,
                     outcome: str) -> "Deferred[None]": ...
    def mark_done(self, campaign_id: str, row_no: int, outcome: str) -> "Deferred[None]": ...
    def set_state(self, campaign_id: str, state: str) -> "Deferred[None]": ...
    def cancel_pending(self, campaign_id: str) -> "Deferred[None]": ...


def dial_key(campaign_id: str, row_no: int, attempt: int) -> str:
    """What a campaign's DialRequest carries as ``campaign_id``: the dialer records it on the
    dial, and ``find_dial`` looks it up."""
    return f"{campaign_id}/{row_no}/{attempt}"


def default_request(to: str, variables: dict[str, str], settings: CampaignSettings, key: str) -> Any:
    from voiced.outbound.request import DialRequest  # dial21's

    return DialRequest(to=to, variables=dict(variables), from_number=settings.from_number,
                       machine_detection=settings.machine_detection, campaign_id=key)


def outcome_of(status: str, answered_by: str) -> str:
    if status == "completed":
        return "voicemail" if answered_by.startswith(("machine", "fax")) else "answered"
    return status
