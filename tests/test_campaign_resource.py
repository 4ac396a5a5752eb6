"""POST/GET /campaigns on a real loopback HTTP server (the admin site's request factory, so its
64 KB body limit too), over the real Campaigns and store, with the in-test dialer."""

from __future__ import annotations

import json

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.fakes.http_apps import make_http_client
from tests.testing.campaigns import TOKEN, AdminServer
from voiced.outbound.campaign_resource import CampaignsResource


def body(rows=None, **settings):
    return {"settings": settings, "rows": rows if rows is not None else [
        {"number": "+972501234567", "variables": {"name": "Dana"}, "tz": "Asia/Jerusalem"},
        {"number": "+12125550100", "variables": {"name": "Lee"}}]}


class ResourceTests(TestCase):
    def setUp(self):
        self.server = AdminServer(self)
        self.http = make_http_client(self)

    async def request(self, method, path, document=None, token=TOKEN, raw=None):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        data = raw if raw is not None else (None if document is None else json.dumps(document).encode())
        response = await self.http.request(method, self.server.url + path, data=data, headers=headers)
        return response.code, json.loads(await treq.content(response))

    async def test_create_follow_and_finish(self):
        code, created = await self.request("POST", "/campaigns", body(concurrency=2, cps=10))
        self.assertEqual((code, created["rows"], created["state"]), (201, 2, "running"))
        campaign_id = created["campaign_id"]
        self.assertRegex(campaign_id, r"^c-[0-9a-f]{16}$")
        for _ in range(100):
            code, progress = await self.request("GET", f"/campaigns/{campaign_id}")
            if progress["state"] == "done":
                break
        self.assertEqual((code, progress["outcomes"], progress["rows"], progress["settings"]["concurrency"]),
                         (200, {"answered": 2}, 2, 2))
        self.assertEqual(sorted((r.to, r.variables["name"]) for _, r in self.server.dialer.requests),
                         [("+12125550100", "Lee"), ("+972501234567", "Dana")])

    async def test_auth(self):
        self.assertEqual((await self.request("POST", "/campaigns", body(), token=None))[0], 401)
        code, answer = await self.request("POST", "/campaigns", body(), token="wrong")
        self.assertEqual(code, 401)
        self.assertIn("wrong bearer token", answer["error"])
        self.assertEqual((await self.request("GET", "/campaigns/c-0", token=None))[0], 401)
        self.assertEqual(self.server.dialer.requests, [])

    async def test_without_a_configured_token_it_is_off(self):
        self.server = AdminServer(self, token="")
        code, answer = await self.request("POST", "/campaigns", body(), token="")
        self.assertEqual(code, 503)
        self.assertIn("(VOICED_ADMIN_TOKEN)", answer["error"])

    async def test_without_the_journal_there_are_no_campaigns(self):
        root = Resource()
        off = "campaigns need the journal (VOICED_JOURNAL): it is their queue"
        root.putChild(b"campaigns", CampaignsResource(lambda: off, TOKEN))
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        response = await self.http.request("POST", f"http://127.0.0.1:{port.getHost().port}/campaigns",
                                           data=json.dumps(body()).encode(),
                                           headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(response.code, 503)
        self.assertIn("campaigns need the journal", json.loads(await treq.content(response))["error"])

    async def test_bad_requests_say_why(self):
        cases = [(None, b"{nope", "the body is not JSON"),
                 (body(rows=[{"number": "0501234567"}]), None, "row 1: number '0501234567' is not an E.164"),
                 (body(rows=[]), None, "a campaign needs at least one row"),
                 (body(concurrency=0), None, "concurrency must be between 1"),
                 (body(window="9 to 5"), None, "is not HH:MM-HH:MM"),
                 ({"rows": [], "colour": "red"}, None, "unknown field(s): colour")]
        for document, raw, message in cases:
            code, answer = await self.request("POST", "/campaigns", document, raw=raw)
            self.assertEqual(code, 400, message)
            self.assertIn(message, answer["error"])
        self.assertEqual(self.server.dialer.requests, [])
        huge = json.dumps(body(rows=[{"number": "+972501234567", "variables": {"x": "y" * 1000}}] * 70)).encode()
        response = await self.http.request("POST", self.server.url + "/campaigns", data=huge,
                                           headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(response.code, 413, "the admin site's body limit: send batches")
        await treq.content(response)

    async def test_unknown_campaign_wrong_method_and_path(self):
        self.assertEqual((await self.request("GET", "/campaigns/c-nope"))[0], 404)
        self.assertEqual((await self.request("POST", "/campaigns/c-nope/cancel"))[0], 404)
        self.assertEqual((await self.request("POST", "/campaigns/c-nope/rows",
                                             {"first_row": 1, "rows": []}))[0], 404)
        self.assertEqual((await self.request("DELETE", "/campaigns/c-nope"))[0], 405)
        self.assertEqual((await self.request("GET", "/campaigns/c-nope/other"))[0], 404)

    async def test_batches_and_cancel(self):
        # Calls that never end: the campaign is still running when it is cancelled.
        self.server.dialer.plan = lambda request: [(0.0, "ringing")]
        code, created = await self.request("POST", "/campaigns", {**body(concurrency=1), "more": True})
        campaign_id = created["campaign_id"]
        self.assertEqual((code, created["state"]), (201, "loading"))
        more = {"first_row": 3, "rows": [{"number": "+12125550101"}], "more": False}
        code, answer = await self.request("POST", f"/campaigns/{campaign_id}/rows", more)
        self.assertEqual((code, answer["rows"]), (200, 1))
        code, answer = await self.request("POST", f"/campaigns/{campaign_id}/rows", more)
        self.assertEqual(code, 409, "a batch sent again is not queued again")
        code, progress = await self.request("POST", f"/campaigns/{campaign_id}/cancel")
        self.assertEqual((code, progress["state"], progress["rows"], progress["outcomes"], progress["in_flight"]),
                         (200, "cancelled", 3, {"skipped": 2}, 1))
        self.assertEqual(len(self.server.dialer.requests), 1)
