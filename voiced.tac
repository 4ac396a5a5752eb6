# twistd -ny voiced.tac : the same service as `twistd voiced`, configured from VOICED_* environment variables.
from twisted.application import service

from voiced.config import Settings
from voiced.service import VoicedService

application = service.Application("voiced")
VoicedService(Settings.load()).setServiceParent(application)
