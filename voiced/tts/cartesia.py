"""Cartesia streaming TTS over ``POST /tts/bytes``: raw 8 kHz mu-law (``pcm_mulaw``) in a chunked
body, ``X-API-Key`` and ``Cartesia-Version`` headers.

Why the bytes endpoint and not the WebSocket: voiced hands the TTS a whole sentence at a time,
so the WebSocket's strength (feeding text as an LLM writes it, with ``continue`` contexts) buys
nothing here, while it costs a per-process socket to keep alive and reconnect, JSON and base64
around every chunk, and context bookkeeping to cancel. Over the service's persistent pool a
POST reuses a warm TLS connection, and cancelling it is closing the response, as for ElevenLabs.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime

from voiced.config import Settings
from voiced.language import primary
from voiced.lifecycle import note_construction
from voiced.tts.http_stream import HTTPStreamingEngine, VendorRequest

#: The API version this client was written against (a dated header Cartesia requires).
CARTESIA_VERSION = "2025-04-16"
OUTPUT_FORMAT = {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}


class CartesiaTTSEngine(HTTPStreamingEngine):
    name = "cartesia"

    def __init__(self, http: Any, settings: Settings, clock: IReactorTime, **kwargs: Any) -> None:
        super().__init__(http, clock, **kwargs)
        self._url = settings.cartesia_base_url.rstrip("/") + "/tts/bytes"
        self._headers = {"X-API-Key": settings.cartesia_api_key, "Cartesia-Version": CARTESIA_VERSION,
                         "Content-Type": "application/json"}
        self._model = settings.cartesia_model
        self._voice = settings.cartesia_voice_id
        self._language = primary(settings.language)
        note_construction("tts_cartesia")

    def request_for(self, text: str) -> VendorRequest:
        body = {"model_id": self._model, "transcript": text, "voice": {"mode": "id", "id": self._voice},
                "output_format": OUTPUT_FORMAT, "language": self._language}
        return VendorRequest(self._url, self._headers, body)
