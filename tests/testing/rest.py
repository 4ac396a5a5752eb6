"""Carrier REST clients without a network: what the official twilio package would put on the wire."""

from __future__ import annotations

import json

from twilio.http import HttpClient as TwilioHttpClientBase
from twilio.http.response import Response as TwilioResponse


ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "tok-9f8e7d6c5b4a"
CALL = "CA" + "fedcba9876543210" * 2
CALL_RESOURCE = {"sid": CALL, "account_sid": ACCOUNT, "status": "completed"}


class RecordingTwilioHttp(TwilioHttpClientBase):
    """What the twilio package would put on the wire, without a network."""

    def __init__(self) -> None:
        super().__init__(logger=None, is_async=False)
        self.requests: list[dict] = []

    def request(self, method, uri, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False):
        self.requests.append({"method": method, "uri": uri, "data": data, "headers": headers, "auth": auth})
        return TwilioResponse(200, json.dumps(CALL_RESOURCE))
