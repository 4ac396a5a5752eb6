import random

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from voiced.retry import Backoff, retry


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


def transient_only(failure):
    return failure.check(Transient) is not None


class BackoffTests(SynchronousTestCase):
    def test_doubles_to_the_cap(self):
        policy = Backoff.from_ms(200, 1600, attempts=6)
        self.assertEqual(policy.schedule(), [0.2, 0.4, 0.8, 1.6, 1.6, 1.6])

    def test_huge_attempt_numbers_stay_at_the_cap(self):
        self.assertEqual(Backoff(0.2, 1.6, 4).delay(10_000), 1.6)

    def test_jitter_is_a_bounded_fraction(self):
        policy = Backoff(1.0, 10.0, 3, jitter=0.25, rng=random.Random(7))
        delays = [policy.delay(1) for _ in range(500)]
        self.assertTrue(all(0.75 <= d <= 1.25 for d in delays))
        self.assertGreater(max(delays) - min(delays), 0.3)

    def test_jitter_never_exceeds_the_cap(self):
        policy = Backoff(1.0, 2.0, 3, jitter=0.5, rng=random.Random(1))
        self.assertTrue(all(policy.delay(5) <= 2.0 for _ in range(200)))

    def test_rejects_nonsense(self):
        self.assertRaises(ValueError, Backoff, 2.0, 1.0, 3)
        self.assertRaises(ValueError, Backoff, 0.1, 1.0, -1)
        self.assertRaises(ValueError, Backoff, 0.1, 1.0, 1, jitter=1.0)
        self.assertRaises(ValueError, Backoff(0.1, 1.0, 1).delay, 0)


class RetryTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.policy = Backoff.from_ms(200, 1600, attempts=4)
        self.calls = []
        self.retries = []

    def run_retry(self, outcomes):
        """outcomes[n] is what operation(n) returns: a value or an exception."""

        def operation(attempt):
            self.calls.append((attempt, self.clock.seconds()))
            outcome = outcomes[attempt]
            return fail(outcome) if isinstance(outcome, Exception) else succeed(outcome)

        def on_retry(attempt, delay, failure):
            self.retries.append((attempt, delay, failure.type))

        return retry(self.clock, operation, self.policy, transient_only, on_retry)

    def test_first_success_needs_no_wait(self):
        d = self.run_retry(["ok"])
        self.assertEqual(self.successResultOf(d), "ok")
        self.assertEqual(self.retries, [])

    def test_waits_the_backoff_schedule_between_attempts(self):
        d = self.run_retry([Transient(), Transient(), Transient(), "ok"])
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertNoResult(d)
        self.clock.advance(0.4)
        self.assertNoResult(d)
        self.clock.advance(0.7)
        self.assertNoResult(d)
        self.assertEqual(len(self.calls), 3)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), "ok")
        self.assertEqual([round(t, 3) for _, t in self.calls], [0.0, 0.2, 0.6, 1.4])
        self.assertEqual(self.retries, [(1, 0.2, Transient), (2, 0.4, Transient), (3, 0.8, Transient)])

    def test_gives_up_after_the_attempts_with_the_last_failure(self):
        d = self.run_retry([Transient()] * 5)
        self.clock.pump([0.2, 0.4, 0.8, 1.6])
        self.failureResultOf(d, Transient)
        self.assertEqual(len(self.calls), 5)
        self.assertEqual([r[1] for r in self.retries], [0.2, 0.4, 0.8, 1.6])

    def test_non_retryable_fails_at_once(self):
        d = self.run_retry([Fatal()])
        self.failureResultOf(d, Fatal)
        self.assertEqual(self.retries, [])

    def test_zero_attempts_means_no_retry(self):
        self.policy = Backoff(0.2, 1.6, 0)
        self.failureResultOf(self.run_retry([Transient()]), Transient)

    def test_cancel_during_the_wait_stops_retrying(self):
        d = self.run_retry([Transient(), "ok"])
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.clock.advance(10)
        self.assertEqual(len(self.calls), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel_reaches_the_running_operation(self):
        cancelled = []
        pending = Deferred(lambda d: cancelled.append(True))
        d = retry(self.clock, lambda attempt: pending, self.policy, lambda f: True)
        d.cancel()
        self.assertEqual(cancelled, [True])
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
