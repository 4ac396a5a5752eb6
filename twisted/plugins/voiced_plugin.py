# Lazy: twistd imports every plugin file to list commands; voiced.tap loads only when used.
from twisted.application.service import ServiceMaker

voiced = ServiceMaker("voiced", "voiced.tap", "Telephony voice-agent daemon (Twilio Media Streams)", "voiced")
