"""Which carriers the daemon dials through: each one whose REST credentials are set, and
the default (``--dial-carrier``; unset: the first configured of Twilio, Telnyx, Plivo,
Vonage). A request names its carrier (``"carrier"`` in ``POST /calls``, ``voiced-dial
--carrier``) or takes the default. ``CarrierDialers`` is itself a ``CarrierDialer``, so the
``Dialer`` holds one."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from voiced.outbound.request import BadDialRequest, DialRequest

log = Logger(namespace="voiced.outbound")

#: The carriers voiced can dial through, in the order the default is chosen.
DIAL_CARRIERS = ("twilio", "telnyx", "plivo", "vonage")


def _configured(settings: Any) -> dict[str, str]:
    """Each dial carrier -> what it lacks ("" when its credentials are all set)."""
    s = settings
    return {
        "twilio": "" if s.twilio_rest_configured else "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
        "telnyx": "" if s.telnyx_api_key and s.telnyx_connection_id else
        "VOICED_TELNYX_API_KEY and VOICED_TELNYX_CONNECTION_ID",
        "plivo": "" if s.plivo_auth_id and s.plivo_auth_token else "VOICED_PLIVO_AUTH_ID and VOICED_PLIVO_AUTH_TOKEN",
        "vonage": "" if s.vonage_application_id and s.vonage_private_key_file else
        "VOICED_VONAGE_APPLICATION_ID and VOICED_VONAGE_PRIVATE_KEY_FILE",
    }


def _factory(name: str) -> Callable[[Any, Any, IReactorTime], Any]:
    if name == "twilio":
        from voiced.outbound.twilio_dial import twilio_dialer
        return twilio_dialer
    if name == "plivo":
        from voiced.outbound.plivo_dial import plivo_dialer
        return plivo_dialer
    if name == "vonage":
        from voiced.outbound.vonage_dial import vonage_dialer
        return vonage_dialer
    from voiced.outbound.telnyx_dial import telnyx_dialer
    return telnyx_dialer


class CarrierDialers:
    """The configured carriers' dialers, one of them the default (a ``CarrierDialer``)."""

    def __init__(self, dialers: dict[str, Any], default: str) -> None:
        if default not in dialers:
            raise ValueError(f"no dialer for the default carrier {default!r}")
        self.dialers = dialers
        self.carrier = default

    @property
    def names(self) -> list[str]:
        return list(self.dialers)

    def dialer_for(self, carrier: str) -> Any:
        dialer = self.dialers.get(carrier or self.carrier)
        if dialer is None:
            raise BadDialRequest(f"cannot dial through {carrier!r}: this daemon dials through "
                                 f"{', '.join(self.dialers)}")
        return dialer

    def place(self, dial_id: str, request: DialRequest, from_number: str) -> Deferred[str]:
        return self.dialer_for(request.carrier).place(dial_id, request, from_number)

    # Campaign recovery reads calls back through the default carrier (campaigns dial through it).
    def fetch_status(self, call_sid: str) -> Deferred[str | None]:
        return self.dialers[self.carrier].fetch_status(call_sid)

    def find_calls(self, to: str, from_number: str) -> Deferred[list[dict[str, Any]]]:
        return self.dialers[self.carrier].find_calls(to, from_number)


def carrier_dialers(settings: Any, http: Any, clock: IReactorTime) -> CarrierDialers | None:
    """The daemon's dial carriers; None (logged) when none can dial."""
    if not settings.public_url:
        log.info("OUTBOUND off: POST /calls needs --public-url (and a carrier's REST credentials)")
        return None
    lacking = _configured(settings)
    chosen = settings.dial_carrier
    if chosen and lacking.get(chosen):
        log.warn("OUTBOUND off: --dial-carrier {carrier} needs {what}", carrier=chosen, what=lacking[chosen])
        return None
    dialers: dict[str, Any] = {}
    for name in DIAL_CARRIERS:
        if lacking[name]:
            continue
        try:
            dialers[name] = _factory(name)(settings, http, clock)
        except (ValueError, OSError) as e:
            log.warn("OUTBOUND carrier={carrier} off: {error}", carrier=name, error=str(e))
    if not dialers or (chosen and chosen not in dialers):
        log.info("OUTBOUND off: POST /calls needs a carrier's REST credentials: {what}",
                 what="; or ".join(lacking.values()))
        return None
    return CarrierDialers(dialers, chosen or next(iter(dialers)))
