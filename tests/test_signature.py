from twilio.request_validator import RequestValidator
from twisted.trial.unittest import SynchronousTestCase

from voiced.carrier.twilio.signature import signature_matches, twilio_signature

TOKEN = "12345abcdef"


class SignatureTests(SynchronousTestCase):
    def test_matches_twilios_own_validator(self):
        url = "https://voice.example.com/twiml"
        params = {"CallSid": "CA1", "From": "+15551234", "To": "+15559876", "Caller": "+15551234"}
        ours = twilio_signature(TOKEN, url, params)
        self.assertEqual(ours, RequestValidator(TOKEN).compute_signature(url, params))
        self.assertTrue(RequestValidator(TOKEN).validate(url, params, ours))
        self.assertTrue(signature_matches(TOKEN, url, params, ours))

    def test_websocket_upgrade_signs_the_url_alone(self):
        url = "wss://voice.example.com/media"
        signature = RequestValidator(TOKEN).compute_signature(url, {})
        self.assertTrue(signature_matches(TOKEN, url, None, signature))

    def test_default_port_written_or_not(self):
        signed_with_port = twilio_signature(TOKEN, "https://voice.example.com:443/twiml")
        self.assertTrue(signature_matches(TOKEN, "https://voice.example.com/twiml", None, signed_with_port))
        signed_bare = twilio_signature(TOKEN, "https://voice.example.com/twiml")
        self.assertTrue(signature_matches(TOKEN, "https://voice.example.com:443/twiml", None, signed_bare))

    def test_rejections(self):
        url, params = "https://voice.example.com/twiml", {"From": "+1"}
        good = twilio_signature(TOKEN, url, params)
        self.assertFalse(signature_matches(TOKEN, url, params, None))
        self.assertFalse(signature_matches(TOKEN, url, params, ""))
        self.assertFalse(signature_matches("other-token", url, params, good))
        self.assertFalse(signature_matches(TOKEN, url, {"From": "+2"}, good))
        self.assertFalse(signature_matches(TOKEN, "https://evil.example.com/twiml", params, good))
        self.assertFalse(signature_matches(TOKEN, url, params, "not base64 at all"))
