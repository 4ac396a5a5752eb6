"""The campaigns' admin API (on the admin site, bearer ``VOICED_ADMIN_TOKEN``):

* ``POST /campaigns`` ``{"settings": {...}, "rows": [{"number", "variables", "tz"}], "more": false}``
  → 201 ``{"campaign_id", "rows", "state"}``. With ``"more": true`` the campaign stays
  ``loading`` (it dials the rows it has) and takes further batches:
* ``POST /campaigns/{id}/rows`` ``{"first_row": n, "rows": [...], "more": false}``: ``first_row``
  must be the next row number, so a batch sent twice is refused (409), never queued twice.
  (The admin site takes 64 KB a request: a large CSV goes in batches.)
* ``GET /campaigns/{id}``: progress (rows per state, outcomes, retries, calls in flight).
* ``POST /campaigns/{id}/cancel``: no new call; those in flight end normally.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from voiced.journal.store import JournalError
from voiced.outbound.campaign_settings import CampaignError, CampaignRow, CampaignSettings, check_row
from voiced.outbound.campaigns import Campaigns, UnknownCampaign
from voiced.outbound.resources import refusal as admin_refusal

log = Logger(namespace="voiced.campaign")

MAX_ROWS_PER_REQUEST = 10_000


def _json(request: Request, status: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, sort_keys=True).encode() + b"\n"


def _body(request: Request) -> dict[str, Any]:
    raw = request.content.read() if request.content is not None else b""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise CampaignError(f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise CampaignError("the body must be a JSON object")
    return body


def _rows(body: dict[str, Any], first_row: int) -> list[CampaignRow]:
    rows = body.get("rows")
    if not isinstance(rows, list):
        raise CampaignError("rows must be a list of {\"number\", \"variables\", \"tz\"}")
    if len(rows) > MAX_ROWS_PER_REQUEST:
        raise CampaignError(f"{len(rows)} rows in one request, at most {MAX_ROWS_PER_REQUEST}: send batches")
    return [check_row(first_row + i, row) for i, row in enumerate(rows)]


def _more(body: dict[str, Any]) -> bool:
    more = body.get("more", False)
    if not isinstance(more, bool):
        raise CampaignError("more must be true or false")
    return more


class CampaignsResource(Resource):
    isLeaf = True

    def __init__(self, campaigns: "Campaigns | str | Callable[[], Campaigns | str]", token: str) -> None:
        """``campaigns``: the service's, or why there are none (503), or a function giving either
        (the site is built before the service starts and makes its Campaigns)."""
        super().__init__()
        self._source = campaigns if callable(campaigns) else (lambda: campaigns)
        self._token = token

    def render(self, request: Request) -> bytes | int:
        refusal = admin_refusal(request, self._token)
        if refusal is not None:
            return refusal
        campaigns = self._source()
        if isinstance(campaigns, str):
            return _json(request, 503, {"error": campaigns})
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        method = request.method
        if not path and method == b"POST":
            return self._answer(request, lambda body: self._create(campaigns, body), 201)
        if len(path) == 1 and method in (b"GET", b"HEAD"):
            return self._answer(request, lambda _: campaigns.progress(path[0]), 200, with_body=False)
        if len(path) == 2 and path[1] == "cancel" and method == b"POST":
            return self._answer(request, lambda _: campaigns.cancel(path[0]), 200, with_body=False)
        if len(path) == 2 and path[1] == "rows" and method == b"POST":
            return self._answer(request, lambda body: self._append(campaigns, path[0], body), 200)
        if len(path) > 2 or (len(path) == 2 and path[1] not in ("cancel", "rows")):
            return _json(request, 404, {"error": "no such resource"})
        return _json(request, 405, {"error": f"{method.decode()} is not allowed here"})

    def _create(self, campaigns: Campaigns, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        unknown = sorted(set(body) - {"settings", "rows", "more"})
        if unknown:
            raise CampaignError(f"unknown field(s): {', '.join(unknown)} (known: settings, rows, more)")
        settings = CampaignSettings.from_json(body.get("settings", {}))
        rows, more = _rows(body, 1), _more(body)
        if not rows and not more:
            raise CampaignError("a campaign needs at least one row")
        d = campaigns.create(settings, rows, more)
        return d.addCallback(lambda cid: {"campaign_id": cid, "rows": len(rows),
                                          "state": "loading" if more else "running"})

    def _append(self, campaigns: Campaigns, campaign_id: str, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        first_row = body.get("first_row")
        if isinstance(first_row, bool) or not isinstance(first_row, int) or first_row < 1:
            raise CampaignError("first_row must be the number of the batch's first row (1 and up)")
        rows, more = _rows(body, first_row), _more(body)
        d = campaigns.append(campaign_id, first_row, rows, more)
        return d.addCallback(lambda _: {"campaign_id": campaign_id, "rows": len(rows), "more": more})

    def _answer(self, request: Request, work: Callable[[dict[str, Any]], Any], status: int,
                with_body: bool = True) -> bytes | int:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def parse_and_work() -> Any:
            return work(_body(request) if with_body else {})

        def respond(result: Any) -> None:
            if result is None:
                body = _json(request, 404, {"error": "no such campaign"})
            else:
                body = _json(request, status, result)
            if not gone:
                request.write(body)
                request.finish()

        def refuse(failure: Failure) -> None:
            if failure.check(UnknownCampaign):
                body = _json(request, 404, {"error": "no such campaign"})
            elif failure.check(JournalError):
                body = _json(request, 503, {"error": f"the journal is not ready: {failure.value}"})
            elif failure.check(CampaignError):
                # A batch out of order is a conflict with the campaign's rows, not a bad request.
                conflict = "first_row" in str(failure.value) or "takes no more rows" in str(failure.value)
                body = _json(request, 409 if conflict else 400, {"error": str(failure.value)})
            else:
                log.failure("Campaign request failed", failure)
                body = _json(request, 500, {"error": "internal error: see the daemon's log"})
            if not gone:
                request.write(body)
                request.finish()

        maybeDeferred(parse_and_work).addCallbacks(respond, refuse)
        return NOT_DONE_YET
