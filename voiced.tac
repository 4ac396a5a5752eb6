# twistd -ny voiced.tac : the same service as `twistd voiced`, configured from VOICED_* environment variables.
from twisted.application import service

from voiced.app import build
from voiced.reactor import install_unless_chosen
from voiced.tap import tac_settings

install_unless_chosen()  # the lean epoll reactor, before twistd installs its default (unless -r chose one)
settings, warnings = tac_settings()  # a configuration error exits here with one line
application = service.Application("voiced")
if settings.workers > 1:
    from voiced.workers import WorkerSupervisor

    WorkerSupervisor(settings, startup_warnings=warnings).setServiceParent(application)
else:
    build(settings, startup_warnings=warnings).setServiceParent(application)
