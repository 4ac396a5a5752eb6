"""``voiced-dial``: ask a running daemon to place one call.

    voiced-dial +15550100 --var name=Dana --var appointment="Tuesday 10:00" \\
        --admin-url http://127.0.0.1:8080 --token "$VOICED_ADMIN_TOKEN" [--wait]

    voiced-dial --carrier plivo +15550100 --var name=Dana   (default: the daemon's --dial-carrier)

    voiced-dial --csv numbers.csv --concurrency 4 --cps 5   (a campaign: voiced.outbound.campaign_cli)

It is a client of the daemon's ``POST /calls`` (the daemon holds the carrier's
credentials, dials, and runs the agent on the call): it prints the call's id, and with
``--wait`` each status the carrier reports until a final one. Exit status: 0 placed
(with ``--wait``: and completed), 1 refused or not completed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any, Callable, TextIO

from voiced.outbound.campaign_cli import add_campaign_arguments, run_campaign
from voiced.outbound.request import FINAL_STATUSES, BadDialRequest, check_number, check_variables

DEFAULT_ADMIN_URL = "http://127.0.0.1:8080"
POLL_S = 1.0
HTTP_TIMEOUT_S = 30.0


class DialFailed(Exception):
    pass


def parse_var(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--var takes NAME=VALUE, got {text!r}")
    return name.strip(), value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voiced-dial", description="Place an outbound call through a running voiced.")
    p.add_argument("to", nargs="?", metavar="NUMBER", help="the number to call, E.164 (+14155550100)")
    p.add_argument("--var", dest="variables", action="append", type=parse_var, default=[], metavar="NAME=VALUE",
                   help="a variable for the agent ({NAME} in the prompt or the dialog); repeatable")
    p.add_argument("--from", dest="from_number", default="", metavar="NUMBER",
                   help="the caller id to show (default: the daemon's --dial-from)")
    p.add_argument("--carrier", choices=("twilio", "telnyx", "plivo", "vonage"), default="",
                   help="the carrier to dial through (default: the daemon's --dial-carrier)")
    p.add_argument("--machine-detection", action="store_true", help="ask the carrier's answering-machine detection")
    p.add_argument("--admin-url", default=os.environ.get("VOICED_ADMIN_URL", DEFAULT_ADMIN_URL),
                   help=f"the daemon's operators' routes (env VOICED_ADMIN_URL; default {DEFAULT_ADMIN_URL})")
    p.add_argument("--token", default=os.environ.get("VOICED_ADMIN_TOKEN", ""),
                   help="the daemon's --admin-token (env VOICED_ADMIN_TOKEN)")
    p.add_argument("--wait", action="store_true", help="print each status until the call is over")
    p.add_argument("--wait-timeout", type=float, default=600.0, metavar="S", help="give up waiting after S seconds")
    add_campaign_arguments(p)
    return p


def _request(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise DialFailed(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None
    try:
        answer = json.loads(text or b"{}")
    except ValueError:
        answer = {"error": text[:200].decode("utf-8", "replace")}
    return status, answer if isinstance(answer, dict) else {}


def dial(admin_url: str, token: str, body: dict[str, Any]) -> str:
    status, answer = _request("POST", admin_url.rstrip("/") + "/calls", token, body)
    if status != 201 or not isinstance(answer.get("id"), str):
        raise DialFailed(f"HTTP {status}: {answer.get('error', answer)}")
    return answer["id"]


def wait(admin_url: str, token: str, dial_id: str, out: TextIO, timeout_s: float,
         sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> str:
    """Print each new status of ``dial_id`` until a final one (returned)."""
    seen = 0
    deadline = monotonic() + timeout_s
    while True:
        status, answer = _request("GET", f"{admin_url.rstrip('/')}/calls/{dial_id}", token)
        if status != 200:
            raise DialFailed(f"GET /calls/{dial_id}: HTTP {status}: {answer.get('error', answer)}")
        history = answer.get("history") or []
        for event in history[seen:]:
            at = datetime.fromtimestamp(event.get("at", 0)).strftime("%H:%M:%S")
            detail = f"  ({event['detail']})" if event.get("detail") else ""
            out.write(f"{at} {event.get('status')}{detail}\n")
            out.flush()
        seen = len(history)
        if answer.get("status") in FINAL_STATUSES:
            return str(answer["status"])
        if monotonic() > deadline:
            raise DialFailed(f"no final status within {timeout_s:g} s (last: {answer.get('status')})")
        sleep(POLL_S)


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    if args.csv or args.campaign:
        if args.to:
            sys.stderr.write("voiced-dial: give a NUMBER or --csv/--campaign, not both\n")
            return 2
        return run_campaign(args, out=out)
    try:
        if not args.to:
            raise BadDialRequest("give the number to call (E.164, +14155550100)")
        body: dict[str, Any] = {"to": check_number(args.to, "NUMBER"),
                                "variables": check_variables(dict(args.variables))}
        if args.from_number:
            body["from"] = check_number(args.from_number, "--from")
        if args.machine_detection:
            body["machine_detection"] = True
        if args.carrier:
            body["carrier"] = args.carrier
    except BadDialRequest as e:
        sys.stderr.write(f"voiced-dial: {e}\n")
        return 2
    if not args.token:
        sys.stderr.write("voiced-dial: give --token (or VOICED_ADMIN_TOKEN): the daemon's --admin-token\n")
        return 2
    try:
        dial_id = dial(args.admin_url, args.token, body)
        out.write(f"{dial_id}\n")
        out.flush()
        if not args.wait:
            return 0
        final = wait(args.admin_url, args.token, dial_id, out, args.wait_timeout)
    except DialFailed as e:
        sys.stderr.write(f"voiced-dial: {e}\n")
        return 1
    return 0 if final == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
