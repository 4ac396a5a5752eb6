"""End to end: a campaign of 50 numbers through a real daemon (twistd) and a loopback Twilio
REST fake (tests/fakes/twilio_rest.py), killed half-way.

``voiced-dial --csv`` creates the campaign (at most 4 calls at once, 5 a second, busy retried
once after 1 s). The fake answers each call with signed status callbacks (ringing, in-progress,
completed 0.3 s later; numbers ending in 7 are busy the first time). Once the fake has taken
about 25 calls the daemon gets SIGKILL; the fake ends the calls it had without telling anyone
(their callbacks would reach nobody). A new daemon on the same journal takes the campaign up:
``voiced-dial --campaign ID`` follows it to the end. Every number is dialled once (a busy one
twice), never more, and the limits held across the restart."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timezone
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import REPO, Daemon, dialling_through, logged
from tests.fakes.twilio_rest import FakeTwilio

ACCOUNT = "AC" + "7a" * 16
TOKEN = "twilio-auth-token-campaign"
ADMIN = "admin-token-campaign"
NUMBERS = [f"+1555010{i:04d}" for i in range(50)]
BUSY = [n for n in NUMBERS if n.endswith("7")]
CONCURRENCY, CPS = 4, 5
# Where the fake receives them, POSTs may bunch by the way there (a busy daemon reactor, a new
# connection, the test's own reactor): measured at ~0.12 s at worst on a loaded machine.
ARRIVAL_JITTER_S = 0.25
# A DIAL line's time is read a moment after the campaign's limiter read its clock (another
# thread may hold the GIL in between: 5 ms a switch).
LOG_JITTER_S = 0.02


def log_time(line: str) -> float:
    stamp = line.split()[0]  # 2026-12-07T14:06:25.935Z
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def busiest_second(times: list[float], width: float) -> int:
    """The most of ``times`` in any window [t, t + width)."""
    return max(sum(1 for t in times if start <= t < start + width) for start in times)


class CampaignKillTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.twilio = FakeTwilio(ACCOUNT, TOKEN, talk_s=0.3, busy={n: 1 for n in BUSY})
        rundir, self.env = dialling_through(self, self.twilio, ADMIN, "voiced-e2e-campaign-")  # both daemons
        self.admin_url = self.env["VOICED_PUBLIC_URL"]
        self.csv = os.path.join(rundir, "numbers.csv")
        with open(self.csv, "w", encoding="utf-8") as f:
            f.write("number,name\n" + "".join(f"{n},Caller {i}\n" for i, n in enumerate(NUMBERS)))

    async def start_daemon(self) -> Daemon:
        daemon = Daemon(env=self.env)
        self.addCleanup(daemon.stop)
        await deferToThread(daemon.wait_ready)  # the fake keeps answering meanwhile
        return daemon

    def voiced_dial(self, *args: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICED_")}
        env.update(PYTHONPATH=REPO, VOICED_ADMIN_TOKEN=ADMIN, VOICED_ADMIN_URL=self.admin_url)
        return getProcessOutputAndValue(sys.executable, ["-m", "voiced.outbound.cli", *args], env=env, path=REPO)

    async def test_fifty_numbers_limits_busy_retried_once_and_a_sigkill_half_way(self):
        first = await self.start_daemon()
        out, err, code = await self.voiced_dial("--csv", self.csv, "--concurrency", str(CONCURRENCY), "--cps",
                                                str(CPS), "--retries", "1", "--retry-delay", "1s", "--no-wait")
        self.assertEqual(code, 0, (out, err, first.log()[-3000:]))
        campaign_id = out.decode().split()[-1]
        self.assertRegex(campaign_id, r"^c-[0-9a-f]{16}$")

        # The kill comes as Twilio takes the 25th call, before its answer leaves: that row's call
        # exists, but the journal has no CallSid for it, only the dial written before the POST.
        killed: Deferred[None] = Deferred()

        def kill_at_25(posts: int) -> None:
            if posts == 25:
                os.kill(first.process.pid, signal.SIGKILL)
                killed.callback(None)

        self.twilio.on_post = kill_at_25
        await killed.addTimeout(60, reactor)
        self.twilio.on_post = None
        await deferToThread(first.process.wait)
        posts_before = len(self.twilio.posts)
        self.twilio.drop_all()

        second = await self.start_daemon()
        out, err, code = await self.voiced_dial("--campaign", campaign_id)
        log = second.log()
        self.assertEqual(code, 0, (out.decode()[-2000:], err.decode(), log[-4000:]))
        self.assertIn("CAMPAIGN_RESUMED", log)
        found = [line for line in log.splitlines() if "DIAL_FOUND" in line]
        self.assertEqual(len(found), 1, "the 25th call, its answer lost, was found at Twilio, not dialled again")
        self.assertIn(f"call={self.twilio.calls[24].sid}", found[0])

        to = [number for _, number, _ in self.twilio.posts]
        self.assertEqual(sorted(set(to)), sorted(NUMBERS), "every number dialled")
        dialled_twice = sorted(n for n in NUMBERS if to.count(n) == 2)
        self.assertEqual(dialled_twice, sorted(BUSY), "busy numbers twice, the others once")
        self.assertEqual(max(to.count(n) for n in NUMBERS), 2, "none more")
        self.assertLess(posts_before, len(to), "the restart dialled the rest")

        self.assertLessEqual(max(live for _, _, live in self.twilio.posts), CONCURRENCY)
        # The daemons' own moments of asking Twilio (their DIAL lines, to the millisecond): at most
        # CPS in any second; where Twilio takes them, the same but for the way there. (The limiter
        # itself is checked exactly, on a Clock, in tests/test_campaign.py.)
        await logged(second, " DIAL ", len(to) - posts_before)  # the log writer is a moment behind the last POST
        sent = [log_time(line) for line in first.lines(" DIAL ") + second.lines(" DIAL ")]
        self.assertEqual(len(second.lines(" DIAL ")), len(to) - posts_before)
        self.assertIn(len(first.lines(" DIAL ")), (posts_before - 1, posts_before), "its last line may die with it")
        self.assertLessEqual(busiest_second(sent, 1.0 - LOG_JITTER_S), CPS, sent)
        arrived = [at for at, _, _ in self.twilio.posts]
        self.assertLessEqual(busiest_second(arrived, 1.0 - ARRIVAL_JITTER_S), CPS,
                             [(round(t - arrived[0], 3), n[-2:], live) for t, n, live in self.twilio.posts])

        summary = out.decode().strip().splitlines()[-1]
        self.assertIn(f"campaign {campaign_id} done: 50 rows; answered 50, busy 0, no-answer 0, failed 0", summary)
        self.assertIn(f"retried {len(BUSY)}", summary)
