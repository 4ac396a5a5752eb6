"""``voiced-dial --csv`` (voiced.outbound.campaign_cli) against a real loopback HTTP server serving
the campaigns resource; the command's blocking HTTP runs on a thread, the daemon's side on the
reactor."""

from __future__ import annotations

import io
import os
import tempfile

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes.campaign_dialer import HOLD
from tests.testing.campaigns import TOKEN, AdminServer
from voiced.outbound import campaign_cli, cli
from voiced.outbound.campaign_settings import CampaignError


def csv_file(test, text: str) -> str:
    fd, path = tempfile.mkstemp(suffix=".csv")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    test.addCleanup(os.unlink, path)
    return path


def parse(argv):
    return cli.parser().parse_args(argv)  # voiced-dial's own


CSV = ("number,name,appointment,tz\n"
       "+972501234567,Dana,Tuesday 10:00,Asia/Jerusalem\n"
       "\n"
       "+12125550100,Lee,\"Wed, 9:30\",\n"
       "+12125550101,Kim,Thu 14:00,America/New_York\n")


class CsvTests(SynchronousTestCase):
    def test_rows_and_variables(self):
        rows = campaign_cli.read_rows(csv_file(self, CSV))
        self.assertEqual(rows[0], {"number": "+972501234567", "tz": "Asia/Jerusalem",
                                   "variables": {"name": "Dana", "appointment": "Tuesday 10:00"}})
        self.assertEqual(rows[1]["variables"], {"name": "Lee", "appointment": "Wed, 9:30"})
        self.assertEqual(rows[1]["tz"], "")
        self.assertEqual(len(rows), 3)

    def test_bad_files_name_the_line(self):
        for text, message in [
                ("name\nDana\n", "line 1: no 'number' column"),
                ("number,name\n+972501234567,Dana\n+97250,Lee\n", "line 3: number '+97250' is not an E.164"),
                ("number,name\n+972501234567\n", "line 2: 1 fields, the header has 2"),
                ("number,tz\n+972501234567,Moon/Base\n", "line 2: unknown time zone 'Moon/Base'"),
                ("number\n+972501234567\n+972501234567\n", "line 3: +972501234567 is also on line 2"),
                ("number,Number\n", "line 1: column 'Number' appears twice"),
                ("number\n", "no rows under the header"),
                ("", "empty")]:
            e = self.assertRaises(CampaignError, campaign_cli.read_rows, csv_file(self, text))
            self.assertIn(message, str(e))
        e = self.assertRaises(CampaignError, campaign_cli.read_rows, "/nonexistent/numbers.csv")
        self.assertIn("No such file", str(e))

    def test_batches_stay_under_the_limit(self):
        rows = [{"number": f"+1212555{n:04d}", "variables": {"note": "x" * 90}} for n in range(1000)]
        runs = campaign_cli.batches(rows)
        self.assertGreater(len(runs), 1)
        self.assertEqual(sum(len(r) for r in runs), 1000)
        for run in runs:
            self.assertLess(len(campaign_cli.json.dumps({"rows": run, "first_row": 1, "more": True})),
                            campaign_cli.BATCH_BYTES + 200)

    def test_progress_and_summary_lines(self):
        progress = {"campaign_id": "c-1", "state": "running", "rows": 10, "in_flight": 2, "retried": 1,
                    "states": {"done": 5}, "outcomes": {"answered": 3, "busy": 1, "voicemail": 1}}
        self.assertEqual(campaign_cli.progress_line(progress, tty=False),
                         "5/10 done  answered 3  busy 1  voicemail 1  in flight 2  retried 1")
        self.assertTrue(campaign_cli.progress_line(progress, tty=True).startswith("\r[" + "#" * 15 + "-" * 15 + "]"))
        self.assertEqual(campaign_cli.summary({**progress, "state": "done"}),
                         "campaign c-1 done: 10 rows; answered 3, busy 1, no-answer 0, failed 0, voicemail 1, "
                         "retried 1")


class CommandTests(TestCase):
    def run_command(self, argv, tty=False):
        out, err = io.StringIO(), io.StringIO()
        d = deferToThread(campaign_cli.run_campaign, parse(argv), out=out, err=err, sleep=lambda s: None, tty=tty)
        return d.addCallback(lambda code: (code, out.getvalue(), err.getvalue()))

    async def test_a_campaign_from_csv_to_summary(self):
        busy_once = {"+12125550100"}

        def plan(request):
            if request.to in busy_once:
                busy_once.discard(request.to)
                return [(0.0, "busy")]
            return [(0.0, "answered"), (0.0, "completed")]

        server = AdminServer(self, plan=plan)
        code, out, err = await self.run_command(
            ["--csv", csv_file(self, CSV), "--concurrency", "2", "--cps", "50", "--window", "00:00-24:00",
             "--retries", "1", "--retry-delay", "0", "--admin-url", server.url, "--token", TOKEN])
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^campaign c-[0-9a-f]{16}: 3 rows, at most 2 at once, 50 a second, "
                                   r"window 00:00-24:00$")
        self.assertRegex(lines[-1], r"^campaign c-[0-9a-f]{16} done: 3 rows; answered 3, busy 0, no-answer 0, "
                                    r"failed 0, voicemail 0, retried 1$")
        self.assertIn("3/3 done  answered 3  retried 1", lines[-2])
        calls = [(r.to, r.variables.get("name")) for _, r in server.dialer.requests]
        self.assertEqual(sorted(calls), [("+12125550100", "Lee"), ("+12125550100", "Lee"),
                                         ("+12125550101", "Kim"), ("+972501234567", "Dana")])

    async def test_a_progress_bar_on_a_terminal(self):
        server = AdminServer(self)
        code, out, _ = await self.run_command(["--csv", csv_file(self, CSV), "--cps", "50", "--admin-url",
                                               server.url, "--token", TOKEN], tty=True)
        self.assertEqual(code, 0)
        self.assertIn("\r[" + "#" * 30 + "] 3/3  answered 3\033[K\n", out)

    async def test_a_large_file_goes_in_batches(self):
        server = AdminServer(self, plan=lambda request: HOLD)
        text = "number,note\n" + "".join(f"+1212555{n:04d},{'x' * 60}\n" for n in range(1200))
        code, out, err = await self.run_command(["--csv", csv_file(self, text), "--concurrency", "3", "--cps", "50",
                                                 "--no-wait", "--admin-url", server.url, "--token", TOKEN])
        self.assertEqual((code, err), (0, ""))
        campaign_id = out.splitlines()[-1]
        progress = server.campaigns.store.progress(campaign_id)
        rows = []
        progress.addCallback(rows.append)
        self.assertEqual((rows[0]["rows"], rows[0]["state"], rows[0]["in_flight"]), (1200, "running", 3))

    async def test_errors(self):
        server = AdminServer(self)
        code, out, err = await self.run_command(["--csv", csv_file(self, "number\n+9725\n"), "--admin-url",
                                                 server.url, "--token", TOKEN])
        self.assertEqual((code, out), (2, ""))
        self.assertIn("line 2: number '+9725' is not an E.164 number", err)
        code, _, err = await self.run_command(["--csv", csv_file(self, CSV), "--admin-url", server.url,
                                               "--token", "wrong"])
        self.assertEqual(code, 1)
        self.assertIn("POST /campaigns: 401 missing or wrong bearer token", err)
        code, _, err = await self.run_command(["--csv", csv_file(self, CSV), "--window", "late", "--admin-url",
                                               server.url, "--token", TOKEN])
        self.assertEqual(code, 2)
        self.assertIn("window 'late' is not HH:MM-HH:MM", err)
        url = server.url
        await server.stop()
        code, _, err = await self.run_command(["--csv", csv_file(self, CSV), "--admin-url", url,
                                               "--token", TOKEN])
        self.assertEqual(code, 1)
        self.assertIn("cannot reach voiced's admin API", err)
        self.assertEqual(server.dialer.requests, [])
