"""The campaign scheduler on a Clock: its limits for any outcomes, the calling window (across
midnight and DST), retries, cancel; over the real store on a real journal file."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes.campaign_dialer import HOLD, CarrierRefused
from tests.testing.campaigns import Harness, at, rows
from voiced.outbound.campaign import STATUS_CHECK_S, StartLimiter
from voiced.outbound.campaign_settings import (
    CallingWindow, CampaignError, CampaignSettings, check_row)


class LimitsTests(SynchronousTestCase):
    def test_concurrency_and_calls_per_second(self):
        h = Harness(self, plan=lambda request: [(1.0, "ringing"), (7.0, "completed")])
        cid = h.create(CampaignSettings(concurrency=3, cps=2), rows(12))
        h.run(60)
        self.assertEqual(h.progress(cid)["outcomes"], {"answered": 12})
        self.assertEqual(h.progress(cid)["state"], "done")
        self.assertEqual(h.dialer.live_peak, 3)
        starts = h.starts()
        self.assertEqual(len(starts), 12)
        self.assertEqual(starts[:3], [1_000_000.0] * 2 + [1_000_001.0], "2 at once, the 3rd a second later")
        for i in range(len(starts) - 2):
            self.assertGreaterEqual(starts[i + 2] - starts[i], 1.0 - 1e-6, "at most 2 in any second")

    def test_fractional_cps_spaces_every_call(self):
        limiter = StartLimiter(0.5)
        self.assertEqual((limiter.count, limiter.period), (1, 2.0))
        limiter = StartLimiter(2.5)
        self.assertEqual((limiter.count, limiter.period), (2, 0.8))

    @hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(concurrency=st.integers(1, 5), cps=st.sampled_from([0.5, 1.0, 2.0, 3.0, 10.0]), retries=st.integers(0, 2),
           outcomes=st.lists(st.tuples(st.sampled_from(["completed", "busy", "no-answer", "failed", "canceled",
                                                        "refused", "refused-retryable"]),
                                       st.floats(0.0, 20.0)), min_size=1, max_size=40),
           row_count=st.integers(1, 15))
    def test_limits_hold_for_any_outcomes(self, concurrency, cps, retries, outcomes, row_count):
        script = iter(outcomes * 10)

        def plan(request):
            outcome, duration = next(script)
            if outcome.startswith("refused"):
                return CarrierRefused("503", retryable=outcome.endswith("retryable"))
            return [(duration, outcome)]

        h = Harness(self, plan=plan)
        settings = CampaignSettings(concurrency=concurrency, cps=cps, retries=retries, retry_delay_s=30.0,
                                    retry_on=("busy", "no-answer", "failed"))
        cid = h.create(settings, rows(row_count))
        campaign = h.campaigns.running.get(cid)  # (None: over already, every dial refused)
        peak = 0
        for _ in range(4000):
            if campaign is None or campaign.finished.called:
                break
            h.clock.advance(0.25)
            peak = max(peak, campaign.in_flight)
        self.assertEqual(h.progress(cid)["state"], "done", "every row reaches an end")
        self.assertLessEqual(peak, concurrency)
        self.assertLessEqual(h.dialer.live_peak, concurrency)
        limiter = StartLimiter(cps)
        starts = h.starts()
        for i in range(len(starts) - limiter.count):
            self.assertGreaterEqual(starts[i + limiter.count] - starts[i], limiter.period - 1e-6)
        per_number: dict[str, int] = {}
        for _, request in h.dialer.requests:
            per_number[request.to] = per_number.get(request.to, 0) + 1
        self.assertEqual(len(per_number), row_count, "every row dialled")
        self.assertLessEqual(max(per_number.values()), retries + 1)
        progress = h.progress(cid)
        self.assertEqual(progress["states"]["done"], row_count)
        self.assertEqual(progress["retried"], len(starts) - row_count)
        self.assertEqual(sum(progress["outcomes"].values()), row_count)


class WindowTests(SynchronousTestCase):
    def test_parse(self):
        self.assertEqual(str(CallingWindow.parse("9:00-20:30")), "09:00-20:30")
        self.assertIsNone(CallingWindow.parse(""))
        for bad in ("9-20", "25:00-26:00", "10:00-10:00", "09:60-10:00"):
            self.assertRaises(CampaignError, CallingWindow.parse, bad)

    def test_rows_wait_for_the_window_in_their_own_zone(self):
        # 06:00 UTC is 08:00 in Jerusalem (UTC+2 in December) and 01:00 in New York.
        start = at("2026-12-07T06:00:00", "UTC")
        h = Harness(self, plan=lambda r: [(5.0, "completed")], start=start)
        campaign_rows = [check_row(1, {"number": "+97250000001", "tz": "Asia/Jerusalem"}),
                         check_row(2, {"number": "+12125550002", "tz": "America/New_York"}),
                         check_row(3, {"number": "+12125550003"})]  # the campaign's zone: UTC
        cid = h.create(CampaignSettings(window="09:00-20:00", tz="UTC", cps=10, concurrency=5), campaign_rows)
        campaign = h.campaigns.running[cid]
        self.assertEqual(h.starts(), [])
        # One wake-up, at the next opening (no polling), beside the periodic check of calls in flight.
        self.assertEqual(sorted(c.getTime() for c in h.clock.getDelayedCalls()),
                         [start + STATUS_CHECK_S, at("2026-12-07T09:00:00", "Asia/Jerusalem")])
        h.clock.advance(at("2026-12-07T09:00:00", "Asia/Jerusalem") - h.clock.seconds())
        self.assertEqual([r.to for _, r in h.dialer.requests], ["+97250000001"])
        h.clock.advance(at("2026-12-07T09:00:00", "UTC") - h.clock.seconds())
        h.clock.advance(at("2026-12-07T09:00:00", "America/New_York") - h.clock.seconds())
        self.assertEqual([(t, r.to) for t, r in h.dialer.requests],
                         [(at("2026-12-07T09:00:00", "Asia/Jerusalem"), "+97250000001"),
                          (at("2026-12-07T09:00:00", "UTC"), "+12125550003"),
                          (at("2026-12-07T09:00:00", "America/New_York"), "+12125550002")])
        h.clock.advance(10)
        self.assertTrue(campaign.finished.called)

    @hsettings(max_examples=40, deadline=None)
    @given(window=st.sampled_from(["09:00-20:00", "22:00-06:00", "02:30-03:30", "00:30-01:15"]),
           start=st.integers(0, 366 * 86400), zones=st.lists(st.sampled_from(
               ["UTC", "Asia/Jerusalem", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata"]),
               min_size=1, max_size=6))
    def test_no_call_starts_outside_the_window(self, window, start, zones):
        origin = at("2026-01-01T00:00:00", "UTC") + start
        h = Harness(self, plan=lambda r: [(600.0, "no-answer")], start=origin)
        campaign_rows = [check_row(n, {"number": f"+1555010{n:04d}", "tz": tz}) for n, tz in enumerate(zones, 1)]
        cid = h.create(CampaignSettings(window=window, concurrency=2, cps=1, retries=1, retry_delay_s=3600),
                       campaign_rows)
        campaign = h.campaigns.running.get(cid)
        while campaign is not None and not campaign.finished.called:
            # From event to event: a closed window is slept through, not polled.
            h.clock.advance(min(c.getTime() for c in h.clock.getDelayedCalls()) - h.clock.seconds())
        calling_window = CallingWindow.parse(window)
        tz_of = {f"+1555010{n:04d}": ZoneInfo(tz) for n, tz in enumerate(zones, 1)}
        for when, request in h.dialer.requests:
            self.assertTrue(calling_window.is_open(when, tz_of[request.to]),
                            f"{request.to} called at {datetime.fromtimestamp(when, tz_of[request.to])}")
        self.assertEqual(len(h.dialer.requests), 2 * len(zones))
        self.assertLess(h.clock.seconds() - origin, 4 * 86400, "each row within a few days")

    def test_a_window_across_midnight(self):
        window = CallingWindow.parse("22:00-06:00")
        tz = ZoneInfo("Europe/London")
        self.assertTrue(window.is_open(at("2026-12-07T23:30:00", "Europe/London"), tz))
        self.assertTrue(window.is_open(at("2026-12-08T05:59:00", "Europe/London"), tz))
        self.assertFalse(window.is_open(at("2026-12-08T06:00:00", "Europe/London"), tz))
        self.assertEqual(window.next_opening(at("2026-12-08T06:00:00", "Europe/London"), tz),
                         at("2026-12-08T22:00:00", "Europe/London"))
        self.assertEqual(window.next_opening(at("2026-12-08T01:00:00", "Europe/London"), tz),
                         at("2026-12-08T01:00:00", "Europe/London"), "open now")

    def test_dst_the_opening_is_local_time(self):
        tz = ZoneInfo("America/New_York")
        window = CallingWindow.parse("09:00-20:00")
        # The evening before the spring-forward (2026-03-08): 09:00 the next day is EDT (UTC-4).
        opening = window.next_opening(at("2026-03-07T21:00:00", "America/New_York"), tz)
        self.assertEqual(opening, at("2026-03-08T13:00:00", "UTC"))
        # The evening before the fall-back (2026-11-01): 09:00 is EST (UTC-5).
        opening = window.next_opening(at("2026-10-31T21:00:00", "America/New_York"), tz)
        self.assertEqual(opening, at("2026-11-01T14:00:00", "UTC"))
        # A window opening inside the skipped hour opens when the clock has jumped past it.
        gap = CallingWindow.parse("02:30-05:00")
        opening = gap.next_opening(at("2026-03-08T01:00:00", "America/New_York"), tz)
        self.assertEqual(datetime.fromtimestamp(opening, tz).strftime("%H:%M"), "03:30")
        self.assertTrue(gap.is_open(opening, tz))


class RetryTests(SynchronousTestCase):
    def test_busy_is_retried_after_the_delay_then_final(self):
        h = Harness(self, plan=lambda r: [(2.0, "busy")])
        cid = h.create(CampaignSettings(retries=1, retry_delay_s=300), rows(1))
        h.run(10)
        self.assertEqual(len(h.starts()), 1)
        self.assertEqual(h.progress(cid)["states"]["pending"], 1, "waits for its retry")
        h.clock.advance(291.875)  # (binary-exact steps: the Clock's times stay exact)
        self.assertEqual(len(h.starts()), 1)
        h.run(1)
        self.assertEqual(h.starts(), [1_000_000.0, 1_000_302.0])
        h.run(5)
        progress = h.progress(cid)
        self.assertEqual((progress["outcomes"], progress["retried"], progress["state"]), ({"busy": 1}, 1, "done"))

    def test_backoff_grows(self):
        settings = CampaignSettings(retries=3, retry_delay_s=60, retry_backoff=2)
        self.assertEqual([settings.retry_delay(n) for n in (1, 2, 3)], [60, 120, 240])

    def test_a_retryable_refusal_is_retried_another_is_final(self):
        refusals = iter([CarrierRefused("429 too many", retryable=True), [(1.0, "completed")],
                         CarrierRefused("21211 invalid number", retryable=False)])
        h = Harness(self, plan=lambda r: next(refusals))
        cid = h.create(CampaignSettings(retries=1, retry_delay_s=10, cps=1), rows(2))
        h.run(30)
        self.assertEqual([(t - 1_000_000.0, r.to) for t, r in h.dialer.requests],
                         [(0.0, "+15550100001"), (1.0, "+15550100002"), (10.0, "+15550100001")])
        self.assertEqual(h.progress(cid)["outcomes"], {"answered": 1, "failed": 1})

    def test_answered_and_voicemail(self):
        h = Harness(self, plan=lambda r: [(1.0, "answered"), (9.0, "completed")])
        cid = h.create(CampaignSettings(cps=10, concurrency=2), rows(2))
        h.clock.advance(2.0)
        first = h.dialer.requests[0][1].campaign_id
        h.campaigns.on_answered_by(h.carrier.by_key[first], "machine_end_beep")
        h.run(10)
        self.assertEqual(h.progress(cid)["outcomes"], {"answered": 1, "voicemail": 1})

    def test_a_status_before_the_dial_id_is_not_lost(self):
        h = Harness(self, plan=lambda r: HOLD)
        cid = h.create(CampaignSettings(retries=0), rows(1))
        (held,) = h.dialer.held
        dial_id = next(iter(h.carrier.calls))
        h.dialer.report(dial_id, "busy")  # the callback outran the REST answer
        held.callback(dial_id)
        self.assertEqual(h.progress(cid)["outcomes"], {"busy": 1})

    def test_a_lost_status_callback_does_not_hold_its_slot_for_ever(self):
        h = Harness(self, plan=lambda r: [])  # the carrier's callbacks never come
        cid = h.create(CampaignSettings(retries=0, cps=10), rows(2))
        h.run(1)
        dial_id = next(iter(h.carrier.calls))
        h.carrier.calls[dial_id].status = "completed"  # ended; its callback was lost
        self.assertEqual(len(h.starts()), 1)
        h.clock.advance(STATUS_CHECK_S)
        self.assertEqual(len(h.starts()), 2, "its status was asked, its slot freed")
        self.assertEqual(h.progress(cid)["outcomes"], {"answered": 1})


class CancelTests(SynchronousTestCase):
    def test_cancel_skips_the_waiting_rows_and_lets_calls_end(self):
        h = Harness(self, plan=lambda r: [(30.0, "busy")])
        cid = h.create(CampaignSettings(concurrency=2, cps=10, retries=1), rows(5))
        campaign = h.campaigns.running[cid]
        h.clock.advance(1)
        self.assertEqual(len(h.starts()), 2)
        h._result(h.campaigns.cancel(cid))
        progress = h.progress(cid)
        self.assertEqual((progress["state"], progress["outcomes"], progress["in_flight"]),
                         ("cancelled", {"skipped": 3}, 2))
        self.assertFalse(campaign.finished.called)
        h.run(40)
        self.assertEqual(len(h.starts()), 2, "nothing dialled after the cancel, busy not retried")
        self.assertEqual(h.progress(cid)["outcomes"], {"skipped": 3, "busy": 2})
        self.assertTrue(campaign.finished.called)
        self.assertEqual(campaign.state, "cancelled")
        self.assertNotIn(cid, h.campaigns.running)


class SettingsTests(SynchronousTestCase):
    def test_bad_settings_and_rows_say_why(self):
        for data, message in [({"concurrency": 0}, "concurrency must be between 1"),
                              ({"cps": "fast"}, "cps must be a number"),
                              ({"tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
                              ({"retry_on": ["answered"]}, "'answered' cannot be retried"),
                              ({"speed": 1}, "unknown setting(s): speed"),
                              ({"window": "late"}, "is not HH:MM-HH:MM")]:
            e = self.assertRaises(CampaignError, CampaignSettings.from_json, data)
            self.assertIn(message, str(e))
        e = self.assertRaises(CampaignError, check_row, 7, {"number": "0501234567"})
        self.assertIn("row 7: number '0501234567' is not an E.164 number", str(e))
        e = self.assertRaises(CampaignError, check_row, 8, {"number": "+972501234567", "variables": {"a": [1]}})
        self.assertIn("row 8: variable 'a' must be a string", str(e))
        settings = CampaignSettings(window="09:00-20:00", tz="Asia/Jerusalem", retries=2)
        self.assertEqual(CampaignSettings.from_json(settings.as_json()), settings)
