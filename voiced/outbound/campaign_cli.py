"""``voiced-dial --csv numbers.csv``: a campaign from a CSV file, run by the daemon.

The CSV has a header row: a ``number`` column (E.164), an optional ``tz`` column (the callee's
IANA zone), and every other column a variable that reaches the agent. The file is checked
whole before anything is sent (an error names its line). The rows go to ``POST /campaigns``
(in batches: the admin site takes 64 KB a request), then the command follows the campaign
(``GET /campaigns/{id}``): a progress bar on a terminal, a line per change otherwise, and a
summary at the end. The campaign runs in the daemon: interrupting this command does not stop
it (``--campaign ID`` follows it again; ``POST /campaigns/{id}/cancel`` stops it).

Exit status: 0 the campaign is done, 1 it was cancelled or the daemon refused or cannot be
reached, 2 the CSV or an argument is wrong.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Callable, TextIO

from voiced.outbound.campaign_settings import CampaignError, CampaignSettings, check_row

DEFAULT_ADMIN_URL = "http://127.0.0.1:8080"
BATCH_BYTES = 48 * 1024  # under the admin site's 64 KB body limit, with room for the envelope
HTTP_TIMEOUT_S = 30.0
SUMMARY_OUTCOMES = ("answered", "busy", "no-answer", "failed", "voicemail")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


class UsageError(Exception):
    pass


def duration(text: str) -> float:
    """Seconds: ``300``, ``90s``, ``5m``, ``1h``."""
    m = _DURATION.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (300, 90s, 5m, 1h)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def add_campaign_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("campaigns", "call every row of a CSV file (header: number, tz, variables...)")
    g.add_argument("--csv", metavar="FILE", help="the CSV file: a number column, an optional tz column, and "
                                                "every other column a variable")
    g.add_argument("--concurrency", type=int, default=1, metavar="N", help="calls in progress at most (1)")
    g.add_argument("--cps", type=float, default=1.0, metavar="M", help="new calls per second at most (1)")
    g.add_argument("--window", default="", metavar="HH:MM-HH:MM",
                   help="call only between these local times in the callee's zone (default: any time)")
    g.add_argument("--tz", default="UTC", metavar="ZONE", help="the zone of a row with no tz column (UTC)")
    g.add_argument("--retries", type=int, default=1, help="more attempts after busy or no-answer (1)")
    g.add_argument("--retry-delay", type=duration, default=300.0, metavar="DURATION",
                   help="wait before a retry, doubling for each later one (5m)")
    g.add_argument("--retry-on", default="busy,no-answer", metavar="OUTCOMES",
                   help="outcomes worth another attempt: busy, no-answer, failed (busy,no-answer)")
    g.add_argument("--allow-duplicates", action="store_true", help="let a number appear on several rows")
    g.add_argument("--campaign", metavar="ID", help="follow a campaign already created (no --csv)")
    g.add_argument("--no-wait", action="store_true", help="create the campaign, print its id, do not follow it")
    g.add_argument("--poll", type=duration, default=2.0, metavar="DURATION", help=argparse.SUPPRESS)


def read_rows(path: str, allow_duplicates: bool = False) -> list[dict[str, Any]]:
    """The CSV's rows as ``POST /campaigns`` takes them, each checked; a CampaignError names
    the file and line of the first bad one."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return _parse(path, f, allow_duplicates)
    except OSError as e:
        raise CampaignError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CampaignError(f"{path}: not UTF-8 text (save the sheet as CSV UTF-8)") from None
    except csv.Error as e:
        raise CampaignError(f"{path}: not a CSV file: {e}") from None


def _parse(path: str, f: TextIO, allow_duplicates: bool) -> list[dict[str, Any]]:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        raise CampaignError(f"{path}: empty (a header row with a number column is needed)")
    names = [name.strip() for name in header]
    lowered = [name.lower() for name in names]
    if "number" not in lowered:
        raise CampaignError(f"{path} line 1: no 'number' column in the header ({', '.join(names)})")
    for i, name in enumerate(names):
        if not name:
            raise CampaignError(f"{path} line 1: column {i + 1} has no name")
        if lowered.index(name.lower()) != i:
            raise CampaignError(f"{path} line 1: column {name!r} appears twice")
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for fields in reader:
        line = reader.line_num
        if not any(field.strip() for field in fields):
            continue  # a blank line
        if len(fields) != len(names):
            raise CampaignError(f"{path} line {line}: {len(fields)} fields, the header has {len(names)}")
        row: dict[str, Any] = {"variables": {}}
        for name, low, value in zip(names, lowered, fields):
            if low == "number":
                row["number"] = value.strip()
            elif low == "tz":
                row["tz"] = value.strip()
            else:
                row["variables"][name] = value
        try:
            check_row(len(rows) + 1, row)
        except CampaignError as e:
            raise CampaignError(f"{path} line {line}: {str(e).split(': ', 1)[1]}") from None
        if row["number"] in seen and not allow_duplicates:
            raise CampaignError(f"{path} line {line}: {row['number']} is also on line {seen[row['number']]} "
                                f"(--allow-duplicates to call it on both)")
        seen.setdefault(row["number"], line)
        rows.append(row)
    if not rows:
        raise CampaignError(f"{path}: no rows under the header")
    return rows


def batches(rows: list[dict[str, Any]], limit: int = BATCH_BYTES) -> list[list[dict[str, Any]]]:
    """Rows in runs whose JSON stays under ``limit`` bytes (a row longer than that alone)."""
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for row in rows:
        row_size = len(json.dumps(row, ensure_ascii=False).encode()) + 2
        if out[-1] and size + row_size > limit:
            out.append([])
            size = 0
        out[-1].append(row)
        size += row_size
    return out


class AdminAPI:
    """The daemon's admin API, blocking (a command line, not the reactor)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                error = json.loads(e.read()).get("error", "")
            except (ValueError, AttributeError):
                error = ""
            raise UsageError(f"{method} {path}: {e.code} {error or e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise UsageError(f"cannot reach voiced's admin API at {self.url}: {reason} "
                             f"(is voiced running? --admin-url, VOICED_ADMIN_URL)") from None


def settings_from(args: argparse.Namespace) -> CampaignSettings:
    retry_on = tuple(o.strip() for o in args.retry_on.split(",") if o.strip())
    return CampaignSettings(concurrency=args.concurrency, cps=args.cps, window=args.window, tz=args.tz,
                            retries=args.retries, retry_delay_s=args.retry_delay, retry_on=retry_on,
                            machine_detection=bool(getattr(args, "machine_detection", False)),
                            from_number=getattr(args, "from_number", "") or "")


def post_campaign(api: AdminAPI, settings: CampaignSettings, rows: list[dict[str, Any]]) -> str:
    runs = batches(rows)
    created = api.call("POST", "/campaigns", {"settings": settings.as_json(), "rows": runs[0],
                                              "more": len(runs) > 1})
    campaign_id = str(created["campaign_id"])
    first = len(runs[0]) + 1
    for i, run in enumerate(runs[1:], start=2):
        api.call("POST", f"/campaigns/{campaign_id}/rows", {"first_row": first, "rows": run, "more": i < len(runs)})
        first += len(run)
    return campaign_id


def _counts(progress: dict[str, Any]) -> str:
    outcomes = progress.get("outcomes", {})
    parts = [f"{name} {outcomes[name]}" for name in SUMMARY_OUTCOMES if outcomes.get(name)]
    parts += [f"{name} {n}" for name, n in sorted(outcomes.items()) if name not in SUMMARY_OUTCOMES and n]
    if progress.get("in_flight"):
        parts.append(f"in flight {progress['in_flight']}")
    if progress.get("retried"):
        parts.append(f"retried {progress['retried']}")
    return "  ".join(parts)


def progress_line(progress: dict[str, Any], tty: bool, width: int = 30) -> str:
    total = progress.get("rows", 0) or 0
    done = progress.get("states", {}).get("done", 0)
    counts = _counts(progress)
    if not tty:
        return f"{done}/{total} done" + (f"  {counts}" if counts else "")
    filled = width * done // total if total else 0
    return f"\r[{'#' * filled}{'-' * (width - filled)}] {done}/{total}  {counts}\033[K"


def summary(progress: dict[str, Any]) -> str:
    outcomes = progress.get("outcomes", {})
    parts = [f"{name} {outcomes.get(name, 0)}" for name in SUMMARY_OUTCOMES]
    parts += [f"{name} {n}" for name, n in sorted(outcomes.items()) if name not in SUMMARY_OUTCOMES and n]
    parts.append(f"retried {progress.get('retried', 0)}")
    return (f"campaign {progress['campaign_id']} {progress['state']}: {progress.get('rows', 0)} rows; "
            + ", ".join(parts))


def follow(api: AdminAPI, campaign_id: str, out: TextIO, tty: bool, poll_s: float,
           sleep: Callable[[float], None]) -> dict[str, Any]:
    last = ""
    while True:
        progress = api.call("GET", f"/campaigns/{campaign_id}")
        line = progress_line(progress, tty)
        if line != last:
            out.write(line if tty else line + "\n")
            out.flush()
            last = line
        if progress["state"] in ("done", "cancelled") and not progress.get("in_flight"):
            if tty:
                out.write("\n")
            return progress
        sleep(poll_s)


def run_campaign(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None,
                 sleep: Callable[[float], None] = time.sleep, tty: bool | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    tty = out.isatty() if tty is None else tty
    url = getattr(args, "admin_url", "") or os.environ.get("VOICED_ADMIN_URL", "") or DEFAULT_ADMIN_URL
    token = getattr(args, "token", "") or os.environ.get("VOICED_ADMIN_TOKEN", "")
    api = AdminAPI(url, token)
    try:
        if bool(args.csv) == bool(args.campaign):
            raise CampaignError("give --csv FILE (a new campaign) or --campaign ID (follow one)")
        if not token:
            raise CampaignError("set VOICED_ADMIN_TOKEN (the daemon's admin token)")
        if args.csv:
            settings = settings_from(args)
            rows = read_rows(args.csv, args.allow_duplicates)
    except CampaignError as e:
        err.write(f"voiced-dial: {e}\n")
        return 2
    try:
        if args.csv:
            campaign_id = post_campaign(api, settings, rows)
            out.write(f"campaign {campaign_id}: {len(rows)} rows, at most {settings.concurrency} at once, "
                      f"{settings.cps:g} a second, window {settings.window or 'any time'}\n")
            if args.no_wait:
                out.write(f"{campaign_id}\n")
                return 0
        else:
            campaign_id = args.campaign
        final = follow(api, campaign_id, out, tty, args.poll, sleep)
    except UsageError as e:
        err.write(f"voiced-dial: {e}\n")
        return 1
    except KeyboardInterrupt:
        err.write(f"\nvoiced-dial: campaign {campaign_id} goes on in the daemon; follow it with "
                  f"--campaign {campaign_id}, stop it with POST /campaigns/{campaign_id}/cancel\n")
        return 130
    out.write(summary(final) + "\n")
    return 0 if final["state"] == "done" else 1

