"""Hang-up and transfer through Vonage's Voice API, against a real HTTP server on loopback
answering as the API documents (204 on success, RFC 7807 JSON errors), with the request's
application JWT checked against the application's public key."""

from __future__ import annotations

import base64
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes.http_apps import Canned
from tests.fakes.rest_control import FAST, RestControlTestCase
from voiced.call.control import CallControl
from voiced.carrier.vonage.rest import (
    DEFAULT_API_BASE,
    JWT_LIFETIME_S,
    VonageCallControl,
    application_jwt,
    load_private_key,
    transfer_body,
)
from voiced.retry import Backoff

APP_ID = "aaaaaaaa-0000-1111-2222-333333333333"
UUID = "63f61863-4a51-4f6b-86e1-46edebcf9356"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NO_CONTENT = Canned(status=204)


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verified_claims(authorization: str, public_key: rsa.RSAPublicKey) -> dict:
    """What Vonage's API does with the Bearer token: check RS256 against the application's public key."""
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer", authorization
    header, claims, mac = token.split(".")
    assert json.loads(b64url(header)) == {"alg": "RS256", "typ": "JWT"}
    public_key.verify(b64url(mac), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return json.loads(b64url(claims))


class VonageCallControlTests(RestControlTestCase):
    log_namespace = "voiced.carrier.vonage.rest"

    def control(self, api_base: str | None = None, **kwargs) -> VonageCallControl:
        kwargs.setdefault("backoff", FAST)
        return VonageCallControl(self.http, reactor, APP_ID, KEY, api_base or self.server.url(""), **kwargs)

    def assertVoiceApiRequest(self, received, body: dict) -> None:
        self.assertEqual((received.method, received.path), ("PUT", f"/v1/calls/{UUID}"))
        self.assertEqual(received.headers["content-type"], "application/json")
        self.assertEqual(received.json(), body)
        claims = verified_claims(received.headers["authorization"], KEY.public_key())
        self.assertEqual(claims["application_id"], APP_ID)
        self.assertEqual(claims["exp"] - claims["iat"], JWT_LIFETIME_S)
        self.assertLessEqual(abs(claims["iat"] - reactor.seconds()), 5)

    async def test_complete_hangs_up_as_the_sdks_do(self) -> None:
        self.app.answer(NO_CONTENT)
        self.assertIs(await self.control().complete(UUID), True)
        self.assertVoiceApiRequest(self.app.received[0], {"action": "hangup"})
        self.assertEqual(self.logs, [f"VONAGE_REST_OK call={UUID} action=complete"])

    async def test_transfer_to_a_number_connects_a_phone_endpoint(self) -> None:
        self.app.answer(NO_CONTENT)
        self.assertIs(await self.control().transfer(UUID, "+447700900000"), True)
        self.assertVoiceApiRequest(self.app.received[0], {"action": "transfer", "destination": {
            "type": "ncco", "ncco": [{"action": "connect", "endpoint": [{"type": "phone", "number": "447700900000"}]}]}})

    async def test_transfer_to_a_sip_uri_connects_a_sip_endpoint(self) -> None:
        self.app.answer(NO_CONTENT)
        self.assertIs(await self.control().transfer(UUID, "sip:desk@pbx.example.com"), True)
        endpoint = self.app.received[0].json()["destination"]["ncco"][0]["endpoint"]
        self.assertEqual(endpoint, [{"type": "sip", "uri": "sip:desk@pbx.example.com"}])

    async def test_each_attempt_signs_a_fresh_token(self) -> None:
        self.app.answer(Canned(status=503), NO_CONTENT)
        self.assertIs(await self.control().complete(UUID), True)
        first, second = (verified_claims(r.headers["authorization"], KEY.public_key()) for r in self.app.received)
        self.assertNotEqual(first["jti"], second["jti"])
        self.assertEqual(self.logs[0], f"VONAGE_REST_RETRY call={UUID} status=503 attempt=1 action=complete "
                                       "delay_ms=10")

    async def test_429_is_retried_and_400_is_final(self) -> None:
        problem = {"type": "https://developer.nexmo.com/api-errors#bad-request", "title": "Bad Request",
                   "detail": "The call is not in progress", "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf"}
        self.app.answer(Canned(status=429), Canned.json(problem, status=400))
        self.assertIs(await self.control().transfer(UUID, "+447700900000"), False)
        self.assertEqual(len(self.app.received), 2)
        self.assertEqual(self.logs[-1], f"VONAGE_REST_FAILED call={UUID} action=transfer error=VonageRestError: "
                                        "HTTP 400: Bad Request The call is not in progress")

    async def test_a_final_failure_fires_false_and_is_logged(self) -> None:
        self.app.answer(*[Canned(status=500, body=b"internal error")] * 4)
        self.assertIs(await self.control().complete(UUID), False)
        self.assertEqual(len(self.app.received), 4)
        self.assertEqual(self.logs[-1], f"VONAGE_REST_FAILED call={UUID} action=complete "
                                        "error=VonageRestError: HTTP 500: internal error")

    async def test_connection_errors_and_timeouts_are_retried(self) -> None:
        self.app.answer(Canned(hang=True), NO_CONTENT)
        self.assertIs(await self.control(request_timeout_s=0.2).complete(UUID), True)
        await self.app.received[0].lost
        self.assertIn("status=TimeoutError attempt=1", self.logs[0])
        closed = self.server.url("")
        await self.server.stop()
        self.assertIs(await self.control(api_base=closed, backoff=Backoff(0.01, 0.01, attempts=1)).complete(UUID),
                      False)
        self.assertIn("error=ConnectionRefusedError", self.logs[-1])

    async def test_cancelling_fires_false(self) -> None:
        self.app.answer(Canned(hang=True))
        done = self.control().complete(UUID)
        received = await self.app.request(0)
        done.cancel()
        self.assertIs(await done, False)
        await received.lost
        self.assertIn("cancelled", self.logs[-1])

    def test_targets_paths_and_credentials(self) -> None:
        control: CallControl = self.control(api_base="https://api.example.com/")
        for target in ["reception", "447700900000", "+44 7700", "tel:+447700900000", "sip:<desk>@pbx"]:
            self.assertRaises(ValueError, control.transfer, UUID, target)
        self.assertEqual(self.app.received, [])
        self.assertEqual(control.call_url("u/../x?y"), "https://api.example.com/v1/calls/u%2F..%2Fx%3Fy")
        self.assertNotIn("PRIVATE", repr(control))
        self.assertRaises(ValueError, VonageCallControl, self.http, reactor, "", KEY)


class KeyTests(SynchronousTestCase):
    def test_keys_and_tokens(self) -> None:
        pem = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        key = load_private_key(pem)
        claims = verified_claims(f"Bearer {application_jwt(key, APP_ID, 1000.7)}", KEY.public_key())
        self.assertEqual((claims["iat"], claims["exp"]), (1000, 1000 + 15 * 60))
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with self.assertRaises(InvalidSignature):
            verified_claims(f"Bearer {application_jwt(other, APP_ID, 1000)}", KEY.public_key())
        self.assertRaises(ValueError, load_private_key, b"not a key")
        self.assertEqual(DEFAULT_API_BASE, "https://api.nexmo.com")
        self.assertEqual(transfer_body("+15550003333")["destination"]["ncco"][0]["endpoint"][0]["number"],
                         "15550003333")
