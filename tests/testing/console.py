"""The operator console over a service made of its parts (no daemon): settings, call records."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.testing import MemoryReactorClock

from voiced.agent.base import CallInfo
from voiced.call.record import CallHub, CallRecord
from voiced.config import Settings
from voiced.console import Console


TWILIO = {"VOICED_TWILIO_AUTH_TOKEN": "twilio-secret", "VOICED_PUBLIC_URL": "https://voice.example.com"}


def settings(env: dict[str, str] | None = None, listen: list[str] | None = None) -> Settings:
    return Settings.load({"listen": listen} if listen else {}, env or {})


def record(call_sid: str = "CA1", carrier: str = "twilio", playout: str = "carrier") -> CallRecord:
    return CallRecord.begin(CallInfo(call_sid, "MZ1", "+1555", "+1666", {"From": "+1555"}, carrier=carrier),
                            started_at=50.0, playout=playout)


def fake_service(env: dict[str, str] | None = None, listen: list[str] | None = None) -> SimpleNamespace:
    service = SimpleNamespace(settings=settings(env, listen), clock=MemoryReactorClock(), call_hub=CallHub(),
                              calls=set())
    service.console = Console(service)
    return service
