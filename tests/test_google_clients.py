"""Credentials, channels and the process-wide Google clients (nothing here contacts Google)."""

from __future__ import annotations

import json
import os
import stat

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions as gexc
from google.oauth2 import service_account
from twisted.internet import reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

from voiced.config import ConfigError, Settings
from voiced.google import channels as channels_module
from voiced.google.channels import ChannelPool, check_endpoint, endpoint_host, is_loopback, open_channel
from voiced.google.clients import GoogleClients, is_transient
from voiced.google.credentials import CredentialsError, load_credentials
from voiced.lifecycle import construction_counts

_key_pem: list[str] = []


def loop_pool(case: SynchronousTestCase) -> ThreadPool:
    """A pool for the speech loop's thread, stopped after the test (after the clients)."""
    pool = ThreadPool(minthreads=0, maxthreads=1, name="test-speech-loop")
    pool.start()
    case.addCleanup(pool.stop)
    return pool


def service_account_json(**overrides) -> str:
    """A syntactically real service-account key (a fresh RSA key; no such account exists)."""
    if not _key_pem:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _key_pem.append(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
        )
    info = {
        "type": "service_account",
        "project_id": "voiced-test",
        "private_key_id": "0123456789abcdef",
        "private_key": _key_pem[0],
        "client_email": "voiced@voiced-test.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    info.update(overrides)
    return json.dumps(info)


def counts_delta(before: dict[str, int]) -> dict[str, int]:
    after = construction_counts()
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


class CredentialsTests(SynchronousTestCase):
    def test_none_needed_for_the_plaintext_emulator(self) -> None:
        before = construction_counts()
        loaded = load_credentials(Settings(google_endpoint="127.0.0.1:9", google_insecure=True), environ={})
        self.assertIsNone(loaded.credentials)
        self.assertEqual(counts_delta(before), {})

    def test_json_materialized_once_0600_in_a_private_directory(self) -> None:
        before = construction_counts()
        loaded = load_credentials(Settings(google_credentials_json=service_account_json()), environ={})
        self.addCleanup(loaded.discard)
        self.assertIsInstance(loaded.credentials, service_account.Credentials)
        self.assertEqual(loaded.credentials.scopes, ["https://www.googleapis.com/auth/cloud-platform"])
        self.assertEqual(stat.S_IMODE(os.stat(loaded.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(loaded.path)).st_mode), 0o700)
        self.assertIn("voiced@voiced-test", loaded.source)
        self.assertNotIn("PRIVATE KEY", loaded.source)
        self.assertEqual(counts_delta(before), {"google_credentials": 1})
        directory = os.path.dirname(loaded.path)
        loaded.discard()
        self.assertFalse(os.path.exists(directory))

    def test_bad_json_names_the_variable_and_hides_the_secret(self) -> None:
        secret = '{"type": "service_account", "private_key": "TOPSECRET'
        with self.assertRaises(CredentialsError) as caught:
            load_credentials(Settings(google_credentials_json=secret), environ={})
        message = str(caught.exception)
        self.assertIn("VOICED_GOOGLE_CREDENTIALS_JSON", message)
        self.assertIn("not valid JSON", message)
        self.assertNotIn("TOPSECRET", message)
        self.assertIsInstance(caught.exception, ConfigError)

    def test_incomplete_or_wrong_keys_are_explained(self) -> None:
        cases = [
            (service_account_json(type="authorized_user"), "service-account key"),
            (service_account_json(client_email=""), "lacks client_email"),
            (service_account_json(private_key="-----BEGIN PRIVATE KEY-----\nTOPSECRET\n"), "private_key"),
        ]
        for text, expected in cases:
            with self.assertRaises(CredentialsError) as caught:
                load_credentials(Settings(google_credentials_json=text), environ={})
            self.assertIn(expected, str(caught.exception))
            self.assertNotIn("TOPSECRET", str(caught.exception))

    def test_google_application_credentials_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(service_account_json())
        loaded = load_credentials(Settings(), environ={"GOOGLE_APPLICATION_CREDENTIALS": path})
        self.assertEqual(loaded.credentials.service_account_email, "voiced@voiced-test.iam.gserviceaccount.com")
        self.assertIsNone(loaded.path)  # nothing materialized: the file is the operator's

    def test_missing_application_credentials_file(self) -> None:
        with self.assertRaises(CredentialsError) as caught:
            load_credentials(Settings(), environ={"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json"})
        self.assertIn("GOOGLE_APPLICATION_CREDENTIALS", str(caught.exception))
        self.assertIn("/nonexistent/key.json", str(caught.exception))

    def test_application_credentials_must_be_a_service_account(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('{"type": "authorized_user", "refresh_token": "TOPSECRET"}')
        with self.assertRaises(CredentialsError) as caught:
            load_credentials(Settings(), environ={"GOOGLE_APPLICATION_CREDENTIALS": path})
        self.assertIn("not a service-account key", str(caught.exception))
        self.assertNotIn("TOPSECRET", str(caught.exception))


class EndpointTests(SynchronousTestCase):
    def test_hosts(self) -> None:
        self.assertEqual(endpoint_host("127.0.0.1:8085"), "127.0.0.1")
        self.assertEqual(endpoint_host("[::1]:8085"), "::1")
        self.assertEqual(endpoint_host("localhost:1"), "localhost")
        for host in ("127.0.0.1", "127.3.2.1", "::1", "localhost"):
            self.assertTrue(is_loopback(host), host)
        for host in ("10.0.0.1", "speech.example.com", "0.0.0.0", "localhost.evil.com"):
            self.assertFalse(is_loopback(host), host)

    def test_plaintext_only_to_loopback_unless_asked(self) -> None:
        check_endpoint(Settings(google_endpoint="127.0.0.1:8085", google_insecure=True))
        with self.assertRaises(ConfigError) as caught:
            check_endpoint(Settings(google_endpoint="10.1.2.3:8085", google_insecure=True))
        self.assertIn("10.1.2.3", str(caught.exception))
        self.assertIn("--google-insecure-remote", str(caught.exception))
        check_endpoint(Settings(google_endpoint="10.1.2.3:8085", google_insecure=True, google_insecure_remote=True))
        with self.assertRaises(ConfigError):
            check_endpoint(Settings(google_insecure=True))
        check_endpoint(Settings(google_endpoint="speech.example.com:443"))  # TLS anywhere is fine


class ChannelTests(SynchronousTestCase):
    def test_each_channel_is_distinct_and_keeps_alive(self) -> None:
        seen = []
        real = grpc.insecure_channel
        def spy(target, options):
            seen.append(options)
            return real(target, options=options)

        self.patch(channels_module.grpc, "insecure_channel", spy)
        settings = Settings(google_endpoint="127.0.0.1:9", google_insecure=True)
        for i in range(3):
            open_channel(settings, None, "unused:443", i).close()
        self.assertEqual([dict(o)["grpc.channel_pool_idx"] for o in seen], [0, 1, 2])
        for options in seen:
            self.assertEqual(dict(options)["grpc.keepalive_time_ms"], 30_000)
            self.assertEqual(dict(options)["grpc.keepalive_permit_without_calls"], 1)

    def test_secure_channel_with_credentials_is_built_without_connecting(self) -> None:
        loaded = load_credentials(Settings(google_credentials_json=service_account_json()), environ={})
        self.addCleanup(loaded.discard)
        before = construction_counts()
        channel = open_channel(Settings(google_endpoint="127.0.0.1:9"), loaded.credentials, "unused:443", 0)
        channel.close()
        self.assertEqual(counts_delta(before), {"google_channel": 1})

    def test_pool_spreads_least_loaded_first_and_warns_beyond_the_cap(self) -> None:
        lines: list[str] = []
        observer = lambda event: lines.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        pool = ChannelPool([object(), object(), object()], make_client=lambda c: ("client", c), max_per_channel=2)
        leases = [pool.acquire() for _ in range(6)]
        self.assertEqual(pool.loads, [2, 2, 2])
        self.assertEqual(sorted(lease.index for lease in leases), [0, 0, 1, 1, 2, 2])
        self.assertFalse([line for line in lines if "over 2 streams" in line])
        leases[0].release()
        leases[0].release()  # idempotent
        self.assertEqual(sorted(pool.loads), [1, 2, 2])
        refill = pool.acquire()
        self.assertEqual(refill.index, leases[0].index)
        extra = pool.acquire()
        self.assertEqual(max(pool.loads), 3)
        self.assertEqual(len([line for line in lines if "over 2 streams" in line]), 1)
        self.assertIs(extra.client[1], pool._channels[extra.index])


class GrowingPoolTests(SynchronousTestCase):
    def test_pool_opens_a_channel_when_every_channel_is_full_and_never_caps_streams(self) -> None:
        opened: list[int] = []

        def open_more(n: int) -> object:
            opened.append(n)
            return ("channel", n)

        pool = ChannelPool([object()], make_client=lambda c: ("client", c), max_per_channel=2, open_channel=open_more)
        leases = [pool.acquire() for _ in range(5)]
        self.assertEqual((opened, pool.size, pool.loads), ([1, 2], 3, [2, 2, 1]))
        for lease in leases:
            lease.release()
        self.assertEqual(pool.loads, [0, 0, 0])  # channels stay open for the next peak


class GoogleClientsTests(SynchronousTestCase):
    def settings(self, **more) -> Settings:
        return Settings(google_endpoint="127.0.0.1:9", google_insecure=True, google_channels=3, **more)

    def test_construction_creates_nothing_start_creates_everything_once(self) -> None:
        before = construction_counts()
        clients = GoogleClients(self.settings(), reactor)
        self.assertEqual(counts_delta(before), {})  # safe before twistd forks
        self.assertRaises(RuntimeError, clients.acquire_speech)
        pool = loop_pool(self)
        clients.start(pool)
        self.addCleanup(clients.stop)
        clients.start(pool)  # idempotent
        self.assertEqual(
            counts_delta(before), {"google_channel": 4, "google_speech_client": 3, "google_tts_client": 1}
        )
        leases = [clients.acquire_speech() for _ in range(5)]
        self.assertEqual(sorted(clients.speech_loads), [1, 2, 2])
        self.assertEqual(len({id(lease.client) for lease in leases}), 3)
        self.assertIsNotNone(clients.tts_client)
        for lease in leases:
            lease.release()
        self.assertEqual(clients.speech_loads, [0, 0, 0])
        clients.stop()
        self.assertRaises(RuntimeError, lambda: clients.tts_client)

    def test_start_with_service_account_json_then_stop_removes_the_file(self) -> None:
        clients = GoogleClients(Settings(google_credentials_json=service_account_json(), google_channels=1), reactor)
        before = construction_counts()
        clients.start(loop_pool(self))
        path = clients._credentials.path
        self.assertTrue(os.path.exists(path))
        self.assertEqual(counts_delta(before)["google_credentials"], 1)
        clients.stop()
        self.assertFalse(os.path.exists(path))

    def test_refuses_plaintext_to_a_remote_host_at_start(self) -> None:
        clients = GoogleClients(Settings(google_endpoint="192.0.2.7:443", google_insecure=True), reactor)
        self.assertRaises(ConfigError, clients.start, loop_pool(self))
        self.assertFalse(clients.started)

    def test_transient_errors(self) -> None:
        for error in (
            gexc.ServiceUnavailable("503"),
            gexc.InternalServerError("x"),
            gexc.DeadlineExceeded("x"),
            gexc.Aborted("x"),
            gexc.ResourceExhausted("x"),
            gexc.Unknown("Connection reset by peer"),
        ):
            self.assertTrue(is_transient(error), error)
        for error in (gexc.InvalidArgument("x"), gexc.PermissionDenied("x"), gexc.Unknown("?"), ValueError()):
            self.assertFalse(is_transient(error), error)
