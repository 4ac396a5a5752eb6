"""An outbound call's media stream: its TwiML's token was issued for the dial id (Twilio
names the call only after the TwiML is written); the Twilio socket admits it for that
dial and no other. Real Autobahn framing on a StringTransport, a Clock."""

from __future__ import annotations

from tests.testing.carriers import Harness, start_with
from voiced.carrier import media_token
from voiced.config import Settings

DIAL = "d-0123456789abcdef"


class DialTokenTests(Harness):
    settings = Settings(twilio_auth_token="tok", public_url="https://voice.example.com")

    def test_a_token_for_the_streams_dial_admits_it(self):
        token = media_token.issue("tok", DIAL, self.clock.seconds(), 300)
        self.send(start_with({"From": "+15550111", "voiced_dial": DIAL, media_token.PARAMETER: token}))
        start = self.service.calls[0][0]
        self.assertEqual(start.custom_parameters, {"From": "+15550111", "voiced_dial": DIAL})
        self.assertIsNone(self.close_code())

    def test_a_token_for_another_dial_or_none_closes_1008(self):
        other = media_token.issue("tok", "d-ffffffffffffffff", self.clock.seconds(), 300)
        self.send(start_with({"voiced_dial": DIAL, media_token.PARAMETER: other}))
        self.assertEqual((self.service.calls, self.close_code()), ([], 1008))

    def test_a_dial_parameter_without_a_token_closes_1008(self):
        self.send(start_with({"voiced_dial": DIAL}))
        self.assertEqual((self.service.calls, self.close_code()), ([], 1008))
