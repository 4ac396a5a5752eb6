"""voiced: a telephony voice-agent daemon on Twisted and Autobahn."""

__version__ = "0.1.0"
