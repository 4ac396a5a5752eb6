"""What the carriers' media protocols share about an inbound message that is not right:
one that does not parse, and one that names another stream than the socket's own.
Either costs that message (a protocol error on the link), never the socket."""

from __future__ import annotations

from twisted.logger import Logger

from voiced.carrier.link import CallLink

log = Logger(namespace="voiced.carrier")


def parse_failed(link: CallLink, error: Exception, protocol_error: type[Exception], what: str = "message") -> None:
    """Report a parse that raised ``error``; call it from the ``except`` that caught it (a
    parser gap is logged with its traceback). The parse stays inline in each protocol's
    ``received``: fifty media messages a call-second pay nothing for this."""
    if isinstance(error, protocol_error):
        link.protocol_error(str(error))
        return
    log.failure("Unexpected parse failure call={call}", call=link.call_id)
    link.protocol_error(f"unparseable {what} ({type(error).__name__})")


def foreign_stream(link: CallLink, kind: str, id_name: str, named: str, own: str) -> bool:
    """Whether a ``kind`` message naming stream ``named`` (by ``id_name``) belongs to another
    stream than this socket's ``own``: then it is reported, and the caller drops it."""
    if not named or not own or named == own:
        return False
    link.protocol_error(f"{kind} for {id_name} {named[:40]!r} dropped (this stream is {own})")
    return True
