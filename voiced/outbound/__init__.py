"""Outbound calls: voiced places a call through the carrier's REST API and runs the same
agent on it when the carrier opens the call's media stream.

``request`` (what to dial and the statuses a dial goes through, pure), ``twilio_dial``
(Twilio's Calls resource and its status callbacks), ``dialer`` (the service-owned
``Dialer``: dials, their status history, matching a stream to its dial), ``resources``
(``POST /calls``, ``GET /calls/{id}``, ``POST /twilio/status``) and ``cli`` (``voiced-dial``).
Campaigns (``voiced-dial --csv``) are the ``campaign*`` modules: the journal is their queue.
"""
