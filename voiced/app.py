"""The composition root: the one place that wires voiced together.

``VoicedService`` owns the process-wide resources (engines, pools, the agent, the
journal) and the calls; it knows nothing of HTTP or of any carrier. Here it gets
its faces: the console, each carrier (its media socket, its HTTP answer, its REST
control, its own listeners), the carriers' site with the operators' routes, and
the listeners that serve them. ``twistd voiced``, ``voiced.tac`` and each worker
of ``--workers`` build the daemon with ``build``.
"""

from __future__ import annotations

from typing import Any, Callable

from voiced.carrier.base import Carrier
from voiced.carrier.gate import modes_line
from voiced.config import Settings
from voiced.service import VoicedService


def carrier_builders() -> list[Callable[..., Carrier]]:
    """Every carrier package's ``carrier(core, settings, console) -> Carrier``."""
    from voiced.carrier import asterisk, audiosocket, exotel, plivo, telnyx, twilio, vonage

    return [
        twilio.carrier,
        telnyx.carrier,
        plivo.carrier,
        vonage.carrier,
        exotel.carrier,
        asterisk.carrier,
        audiosocket.carrier,
    ]


def build(settings: Settings, reactor: Any = None, startup_warnings: Any = (), worker: Any = None) -> VoicedService:
    from voiced.console import Console
    from voiced.listener import AdoptedListener, Listener
    from voiced.web import build_admin_site, build_site

    service = VoicedService(settings, reactor, startup_warnings, worker)
    console = Console(service)
    console.setServiceParent(service)
    carriers = build_carriers(service, settings, console)
    site = build_site(service, carriers, console, with_admin=not settings.admin_listen)
    mount_twilio_amd(site.resource, service, settings)
    reactor = service.clock
    if worker is not None:  # the supervisor's sockets, shared with the other workers
        for fd, family in worker.listen_fds:
            AdoptedListener(fd, family, site, reactor).setServiceParent(service)
        if worker.admin_fd is not None:
            AdoptedListener(*worker.admin_fd, build_admin_site(service), reactor).setServiceParent(service)
    else:
        for endpoint in settings.listen:
            Listener("--listen", endpoint, site, reactor).setServiceParent(service)
        if settings.admin_listen:
            Listener("--admin-listen", settings.admin_listen, build_admin_site(service), reactor).setServiceParent(service)
    adopted = {option: (fd, family) for option, fd, family in worker.carrier_fds} if worker is not None else {}
    for carrier in carriers:
        for option, endpoint, factory in carrier.listeners:
            if option in adopted:  # the supervisor bound it (voiced.worker_spec.carrier_endpoints)
                AdoptedListener(*adopted[option], factory, reactor).setServiceParent(service)
            else:
                Listener(option, endpoint, factory, reactor).setServiceParent(service)
    return service


def mount_twilio_amd(root: Any, service: VoicedService, settings: Settings) -> None:
    """Twilio's answering-machine verdicts for the calls voiced placed, beside its /twiml."""
    from voiced.carrier.twilio.amd import AMD_PATH, TwilioAmdCallback
    from voiced.web import mount

    mount(root, AMD_PATH, TwilioAmdCallback(settings.twilio_auth_token, settings.public_url, service.call_by_id))


def build_carriers(service: VoicedService, settings: Settings, console: Any = None) -> list[Carrier]:
    """Every carrier, told to the service: its REST control (made once the HTTP client
    exists) and its start-up warnings."""
    carriers = [make(service, settings, console) for make in carrier_builders()]
    service.carrier_modes = modes_line(carriers)
    for carrier in carriers:
        if carrier.control is not None:
            service.control_factories[carrier.name] = carrier.control
        service.carrier_warnings.extend(carrier.warnings)
    return carriers
