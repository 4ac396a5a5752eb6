"""BatchRunner: gathering per reactor iteration, one batch in flight, failures, cancels, stop."""

from __future__ import annotations

import threading
from typing import Any, Callable

from twisted.internet import reactor as real_reactor
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.testing.threads import ManualThreadPool, ThreadedClock, settle
from voiced.turns.batching import BatchResultMismatch, BatchRunner, RunnerStopped


class BatchRunnerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = ThreadedClock()
        self.pool = ManualThreadPool()
        self.batches: list[list[int]] = []

    def runner(self, run_batch: Callable[[list[int]], list[Any]] | None = None, max_batch: int = 100) -> BatchRunner:
        def squares(items: list[int]) -> list[int]:
            self.batches.append(list(items))
            return [i * i for i in items]

        return BatchRunner(self.clock, self.pool, run_batch or squares, max_batch)  # type: ignore[arg-type]

    def results(self, deferreds: list[Deferred]) -> list[Any]:
        out: list[Any] = []
        for d in deferreds:
            d.addBoth(out.append)
        return out

    def test_one_iteration_is_one_batch_with_results_in_order(self) -> None:
        runner = self.runner()
        got = self.results([runner.submit(i) for i in range(5)])
        self.assertEqual(self.pool.jobs, [])  # gathered until the iteration ends
        self.clock.advance(0)
        self.assertEqual(len(self.pool.jobs), 1)
        self.assertEqual(got, [])  # nothing fires before the batch's thread is done
        settle(self.clock, self.pool)
        self.assertEqual(self.batches, [[0, 1, 2, 3, 4]])
        self.assertEqual(got, [0, 1, 4, 9, 16])
        self.assertEqual((runner.batches, runner.items), (1, 5))

    def test_nothing_fires_inside_submit(self) -> None:
        runner = self.runner()
        runner.stop()
        got = self.results([runner.submit(1)])
        self.assertEqual(got, [])
        self.clock.advance(0)
        self.assertIsInstance(got[0].value, RunnerStopped)

    def test_submissions_while_a_batch_runs_form_the_next_batch(self) -> None:
        runner = self.runner()
        first = self.results([runner.submit(1), runner.submit(2)])
        self.clock.advance(0)  # batch [1, 2] is in flight
        third = runner.submit(3)
        self.clock.advance(0)
        self.clock.advance(0)
        second = self.results([third, runner.submit(4)])
        self.assertEqual(len(self.pool.jobs), 1, "at most one batch in flight")
        settle(self.clock, self.pool)
        self.assertEqual(self.batches, [[1, 2], [3, 4]])
        self.assertEqual((first, second), ([1, 4], [9, 16]))

    def test_max_batch_splits_a_burst(self) -> None:
        runner = self.runner(max_batch=3)
        got = self.results([runner.submit(i) for i in range(7)])
        settle(self.clock, self.pool)
        self.assertEqual(self.batches, [[0, 1, 2], [3, 4, 5], [6]])
        self.assertEqual(got, [i * i for i in range(7)])

    def test_a_result_callback_that_submits_joins_the_next_batch(self) -> None:
        runner = self.runner()
        chained: list[int] = []
        runner.submit(2).addCallback(lambda v: runner.submit(v).addCallback(chained.append))
        settle(self.clock, self.pool)
        self.assertEqual(self.batches, [[2], [4]])
        self.assertEqual(chained, [16])

    def test_a_failed_batch_fails_each_item_and_not_the_runner(self) -> None:
        def flaky(items: list[int]) -> list[int]:
            if 13 in items:
                raise RuntimeError("model exploded")
            return items

        runner = self.runner(flaky)
        failed = self.results([runner.submit(13), runner.submit(1)])
        settle(self.clock, self.pool)
        self.assertEqual([f.value.args for f in failed], [("model exploded",)] * 2)
        after = self.results([runner.submit(5)])
        settle(self.clock, self.pool)
        self.assertEqual(after, [5])

    def test_a_batch_with_the_wrong_number_of_results_fails_its_items(self) -> None:
        runner = self.runner(lambda items: items[:-1])
        got = self.results([runner.submit(1), runner.submit(2)])
        settle(self.clock, self.pool)
        for failure in got:
            self.assertIsInstance(failure.value, BatchResultMismatch)
        got = self.results([runner.submit(1)])
        settle(self.clock, self.pool)
        self.assertIsInstance(got[0].value, BatchResultMismatch)  # an empty list for one item

    def test_a_cancelled_item_leaves_its_batch_before_it_starts(self) -> None:
        runner = self.runner()
        kept, dropped = runner.submit(1), runner.submit(2)
        got = self.results([kept])
        dropped.cancel()
        self.failureResultOf(dropped, CancelledError)
        settle(self.clock, self.pool)
        self.assertEqual(self.batches, [[1]])
        self.assertEqual(got, [1])

    def test_a_cancelled_item_of_a_running_batch_is_not_delivered(self) -> None:
        runner = self.runner()
        kept, dropped = runner.submit(1), runner.submit(2)
        got = self.results([kept])
        self.clock.advance(0)  # in flight
        dropped.cancel()
        self.failureResultOf(dropped, CancelledError)
        settle(self.clock, self.pool)  # the late result is dropped without AlreadyCalledError
        self.assertEqual(self.batches, [[1, 2]])
        self.assertEqual(got, [1])

    def test_a_batch_of_only_cancelled_items_never_runs(self) -> None:
        runner = self.runner()
        d = runner.submit(1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        settle(self.clock, self.pool)
        self.assertEqual(self.batches, [])

    def test_a_raising_result_callback_does_not_stop_the_others(self) -> None:
        runner = self.runner()
        bad = runner.submit(1)
        bad.addCallback(lambda _: 1 / 0)
        got = self.results([runner.submit(2)])
        settle(self.clock, self.pool)
        self.assertEqual(got, [4])
        self.failureResultOf(bad, ZeroDivisionError)

    def test_stop_fails_waiting_and_running_items(self) -> None:
        runner = self.runner()
        running = self.results([runner.submit(1)])
        self.clock.advance(0)  # [1] in flight
        waiting = self.results([runner.submit(2)])
        runner.stop()
        self.assertIsInstance(running[0].value, RunnerStopped)
        self.assertIsInstance(waiting[0].value, RunnerStopped)
        settle(self.clock, self.pool)  # the running batch ends in its thread, unheard
        self.assertEqual(self.batches, [[1]])
        self.assertEqual(len(running) + len(waiting), 2)

    def test_stop_before_the_iteration_ends_runs_nothing(self) -> None:
        runner = self.runner()
        got = self.results([runner.submit(1)])
        runner.stop()
        settle(self.clock, self.pool)
        self.assertEqual(self.batches, [])
        self.assertIsInstance(got[0].value, RunnerStopped)

    def test_max_batch_must_be_positive(self) -> None:
        self.assertRaises(ValueError, self.runner, max_batch=0)


class RealThreadPoolTests(TestCase):
    """The same runner on the real reactor and a real ThreadPool: batches run off the
    reactor thread and their results come back on it."""

    def setUp(self) -> None:
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="test-batching")
        self.pool.start()
        self.addCleanup(self.pool.stop)

    @inlineCallbacks
    def test_batches_run_in_the_pool_and_results_fire_on_the_reactor_thread(self):
        reactor_thread = threading.current_thread()
        batch_threads: list[threading.Thread] = []
        callback_threads: list[threading.Thread] = []

        def double(items: list[int]) -> list[int]:
            batch_threads.append(threading.current_thread())
            return [2 * i for i in items]

        runner: BatchRunner[int, int] = BatchRunner(real_reactor, self.pool, double, max_batch=4)
        deferreds = [runner.submit(i) for i in range(10)]
        for d in deferreds:
            d.addCallback(lambda v: (callback_threads.append(threading.current_thread()), v)[1])
        results = []
        for d in deferreds:
            results.append((yield d))
        self.assertEqual(results, [2 * i for i in range(10)])
        self.assertEqual(runner.batches, 3)  # 10 items at most 4 at a time
        self.assertNotIn(reactor_thread, batch_threads)
        self.assertEqual(set(callback_threads), {reactor_thread})
        runner.stop()
        late = runner.submit(1)
        yield self.assertFailure(late, RunnerStopped)
