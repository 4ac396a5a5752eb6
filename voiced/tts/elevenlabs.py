"""ElevenLabs streaming TTS: ``POST /v1/text-to-speech/{voice_id}/stream?output_format=ulaw_8000``
with the ``xi-api-key`` header. The body is 8 kHz mu-law already: it goes to the line as it comes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet.interfaces import IReactorTime

from voiced.config import Settings
from voiced.language import primary
from voiced.lifecycle import note_construction
from voiced.tts.http_stream import HTTPStreamingEngine, VendorRequest


class ElevenLabsTTSEngine(HTTPStreamingEngine):
    name = "elevenlabs"

    def __init__(self, http: Any, settings: Settings, clock: IReactorTime, **kwargs: Any) -> None:
        super().__init__(http, clock, **kwargs)
        base = settings.elevenlabs_base_url.rstrip("/")
        self._url = (f"{base}/v1/text-to-speech/{quote(settings.elevenlabs_voice_id, safe='')}/stream"
                     "?output_format=ulaw_8000")
        self._headers = {"xi-api-key": settings.elevenlabs_api_key, "Content-Type": "application/json",
                         "Accept": "audio/basic"}
        self._model = settings.elevenlabs_model
        # Only the v2.5 models take a language to enforce; the others refuse a request naming one.
        self._language = primary(settings.language) if "v2_5" in self._model else None
        note_construction("tts_elevenlabs")

    def request_for(self, text: str) -> VendorRequest:
        body: dict[str, Any] = {"text": text, "model_id": self._model}
        if self._language:
            body["language_code"] = self._language
        return VendorRequest(self._url, self._headers, body)
