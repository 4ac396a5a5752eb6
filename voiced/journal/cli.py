"""``voiced-records``: the call journal from the command line.

Reads open the database read-only (a ``mode=ro`` URI), so they are safe beside the
running daemon (WAL: a reader never blocks the writer). ``redeliver`` is the one
write: it puts records back in the outbox; the daemon sends them at its next sweep
(every 30 s, and at start-up).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
import time
from datetime import datetime, timezone
from typing import Any, Iterable, TextIO

from voiced.journal import dials, store

LATENCIES = ("STT_FINAL_MS", "AGENT_FIRST_SENTENCE_MS", "TTS_READY_MS", "TOTAL_LATENCY_MS", "PLAYBACK_START_MS")
# New columns go at the end: a spreadsheet or script reading the columns by position keeps working.
CSV_FIELDS = ("call_sid", "stream_sid", "from_number", "to_number", "started_at", "ended_at", "duration_s",
              "end_reason", "turn_count", "stt_retries", "delivered_at", "delivery_attempts", "carrier", "playout",
              "answered_by", "recording")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(row: sqlite3.Row) -> float | None:
    return None if row["ended_at"] is None else round(row["ended_at"] - row["started_at"], 1)


def parse_since(text: str, now: float | None = None) -> float:
    """``2024-05-01``, ``2024-05-01T12:00``, a Unix time, or a span back from now: ``90m``, ``24h``, ``7d``."""
    now = time.time() if now is None else now
    spans = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in spans and text[:-1].replace(".", "", 1).isdigit():
        return now - float(text[:-1]) * spans[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a date (2024-05-01[T12:00]), a Unix time or 24h/7d")
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as a person types it
    return parsed.timestamp()


def _recording_state(path: str) -> str:
    """A recording as the list shows it: there, deleted (the retention sweep), or none."""
    if not path:
        return "-"
    return "yes" if os.path.exists(path) else "deleted"


def cmd_list(conn: sqlite3.Connection, args: argparse.Namespace, out: TextIO) -> int:
    rows = store.recent_calls(conn, args.limit, args.carrier)
    # The call id is never cut short (it is what `show` takes); a longer one than a UUID shifts its line.
    out.write(f"{'ended':19}  {'carrier':11}  {'call id':36}  {'from':14}  {'turns':>5}  {'secs':>6}  "
              f"{'delivered':9}  {'recorded':8}  reason\n")
    for row in rows:
        delivered = "yes" if row["delivered_at"] is not None else ("no" if row["delivery_attempts"] else "-")
        duration = _duration(row)
        out.write(f"{_when(row['ended_at']):19}  {row['carrier'][:11]:11}  {row['call_sid']:36}  "
                  f"{row['from_number'][:14]:14}  {row['turn_count']:>5}  {'-' if duration is None else duration:>6}  "
                  f"{delivered:9}  {_recording_state(row['recording']):8}  {row['end_reason']}\n")
    of_carrier = f" {args.carrier}" if args.carrier else ""
    out.write(f"{len(rows)}{of_carrier} calls (of {store.count(conn)} in {args.journal})\n")
    return 0


def cmd_show(conn: sqlite3.Connection, args: argparse.Namespace, out: TextIO) -> int:
    # A dial id (d-...) shows the dial, and its call if it was answered; a call id shows the
    # call, and the dial that placed it.
    dial = dials.dial(conn, args.call_sid) if args.call_sid.startswith("d-") else None
    calls = store.calls_by_sid(conn, dial["call_sid"] if dial is not None else args.call_sid)
    if dial is None and calls and calls[0]["dial_id"]:
        dial = dials.dial(conn, calls[0]["dial_id"])
    if not calls and dial is None:
        sys.stderr.write(f"voiced-records: no call {args.call_sid} in {args.journal}\n")
        return 1
    if dial is not None:
        _write_dial(conn, dial, out)
    for row in calls:
        params = json.loads(row["parameters"])
        playout = "  (heard: voiced's playout clock)" if row["playout"] == "local" else ""
        outbound = "  outbound" if row["direction"] == "outbound" else ""
        out.write(f"call {row['call_sid']}  stream {row['stream_sid']}  carrier {row['carrier']}{outbound}{playout}\n"
                  f"  from {row['from_number'] or '-'} to {row['to_number'] or '-'}  "
                  f"started {_when(row['started_at'])}  ended {_when(row['ended_at'])}  "
                  f"({_duration(row)} s)  reason: {row['end_reason']}\n")
        if row["answered_by"]:
            out.write(f"  answered by: {row['answered_by']}\n")
        extra = {k: v for k, v in params.items() if k not in ("From", "To")}
        if extra:
            out.write(f"  parameters {json.dumps(extra, sort_keys=True)}\n")
        failures = json.loads(row["stt_failures"])
        out.write(f"  stt retries {row['stt_retries']}, give-ups {len(failures)}"
                  + (f": {'; '.join(failures)}" if failures else "") + "\n")
        barge_ins = json.loads(row["record"]).get("barge_ins", [])
        if barge_ins:
            out.write("  barge-ins: " + ", ".join(
                f"{b['at_s']:.1f}s {b['decision']} ({b['reason']})" for b in barge_ins) + "\n")
        delivery = _when(row["delivered_at"]) if row["delivered_at"] is not None else "not delivered"
        if row["last_delivery_error"]:
            delivery += f" (last error: {row['last_delivery_error']})"
        out.write(f"  delivery: {delivery}\n")
        if row["recording"]:
            state = "" if os.path.exists(row["recording"]) else "  (deleted: older than the retention)"
            out.write(f"  recording {row['recording']}{state}\n")
        for turn in store.turns_of(conn, row["id"]):
            _write_turn(turn, out)
    return 0


def _write_dial(conn: sqlite3.Connection, dial: sqlite3.Row, out: TextIO) -> None:
    variables = json.loads(dial["variables"])
    out.write(f"dial {dial['dial_id']}  {dial['carrier']}  to {dial['to_number']} from {dial['from_number']}  "
              f"call {dial['call_sid'] or '-'}  status {dial['status']}"
              + (f"  answered by {dial['answered_by']}" if dial["answered_by"] else "") + "\n")
    if variables:
        out.write(f"  variables {json.dumps(variables, sort_keys=True, ensure_ascii=False)}\n")
    out.write("  status history: " + ", ".join(
        f"{_when(at)[11:]} {status}" + (f" ({detail})" if detail else "") for status, at, detail in
        dials.events(conn, dial["dial_id"])) + "\n")


def _write_turn(turn: sqlite3.Row, out: TextIO) -> None:
    event = json.loads(turn["event"]) if turn["event"] else None
    said = turn["caller_text"] or (f"<{', '.join(f'{k}={v}' for k, v in event.items())}>" if event else "<silence>")
    out.write(f"  turn {turn['number']}\n    caller: {said}\n")
    if turn["reply_text"]:
        out.write(f"    bot:    {turn['reply_text']}\n")
        if turn["interrupted"]:
            out.write(f"    heard:  {turn['heard_text'] or '(nothing)'}  [interrupted]\n")
    flags = [f"actions={','.join(json.loads(turn['actions']))}"] if json.loads(turn["actions"]) else []
    if turn["filler"]:
        flags.append("filler")
    if turn["agent_error"]:
        flags.append(f"agent error: {turn['agent_error']}")
    metrics = json.loads(turn["metrics"])
    latencies = " ".join(f"{name}={metrics.get(name) if metrics.get(name) is not None else '-'}"
                         for name in LATENCIES if name in metrics)
    if latencies:
        out.write(f"    latency {latencies}\n")
    if flags:
        out.write(f"    {'  '.join(flags)}\n")


def _export_rows(conn: sqlite3.Connection, since: float, carrier: str | None) -> Iterable[sqlite3.Row]:
    return store.calls_since(conn, since, carrier)


def cmd_export(conn: sqlite3.Connection, args: argparse.Namespace, out: TextIO) -> int:
    rows = _export_rows(conn, args.since, args.carrier)
    if args.format == "jsonl":
        for row in rows:
            record: dict[str, Any] = json.loads(row["record"])
            record["delivered_at"] = row["delivered_at"]
            # A schema-1 journal's records (read before the daemon migrated it) lack these.
            record.setdefault("carrier", row["carrier"])
            record.setdefault("playout", row["playout"])
            record.setdefault("answered_by", row["answered_by"])
            record.setdefault("recording", row["recording"])
            out.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        return 0
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**{k: row[k] for k in row.keys()}, "duration_s": _duration(row)})
    return 0


def cmd_redeliver(args: argparse.Namespace, out: TextIO) -> int:
    # Read-write for this one statement; the daemon's writer and this wait on each other (timeout).
    conn = sqlite3.connect(args.journal, isolation_level=None, timeout=10)
    try:
        n = store.mark_for_redelivery(conn, None if args.all else args.call_sids)
    finally:
        conn.close()
    from voiced.journal.outbox import SWEEP_INTERVAL_S  # (imports treq: only for this command)

    out.write(f"{n} records back in the outbox: the daemon delivers them within "
              f"{SWEEP_INTERVAL_S:g} s (or at its next start)\n")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voiced-records", description="Read voiced's call journal (VOICED_JOURNAL).")
    p.add_argument("--journal", default=os.environ.get("VOICED_JOURNAL", ""),
                   help="the journal file [env VOICED_JOURNAL]")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="recent calls: time, carrier, call id, from, turns, duration, end reason")
    ls.add_argument("-n", "--limit", type=int, default=20)
    ls.add_argument("--carrier", metavar="NAME", help="only this carrier's calls (twilio, telnyx, asterisk, ...)")
    show = sub.add_parser("show", help="one call's transcript with per-turn latencies")
    show.add_argument("call_sid", metavar="CALL_ID", help="the carrier's call id (Twilio's CallSid, ...), or an "
                      "outbound call's dial id (d-...)")
    export = sub.add_parser("export", help="calls ended since a time, as JSON lines or CSV")
    export.add_argument("--since", type=parse_since, default=0.0, help="2024-05-01[T12:00], a Unix time, 24h, 7d")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--carrier", metavar="NAME", help="only this carrier's calls")
    again = sub.add_parser("redeliver", help="send records to VOICED_CALL_WEBHOOK_URL again")
    again.add_argument("call_sids", nargs="*", metavar="CALL_ID")
    again.add_argument("--all", action="store_true", help="every record, delivered or not")
    return p


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    if not args.journal:
        sys.stderr.write("voiced-records: no journal: pass --journal PATH or set VOICED_JOURNAL\n")
        return 2
    if not os.path.exists(args.journal):
        sys.stderr.write(f"voiced-records: {args.journal} does not exist\n")
        return 2
    if args.command == "redeliver":
        if not args.all and not args.call_sids:
            sys.stderr.write("voiced-records: redeliver CALL_ID... or --all\n")
            return 2
        return cmd_redeliver(args, out)
    try:
        conn = store.open_read_only(args.journal)
    except store.JournalError as e:
        sys.stderr.write(f"voiced-records: {e}\n")
        return 2
    try:
        return {"list": cmd_list, "show": cmd_show, "export": cmd_export}[args.command](conn, args, out)
    except BrokenPipeError:
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
