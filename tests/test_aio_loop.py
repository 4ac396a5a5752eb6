"""The speech event loop: hand-offs in order and batched, tasks as Deferreds, a clean stop."""

from __future__ import annotations

import asyncio
import threading

from twisted.internet import reactor
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from voiced.google.aio_loop import AioLoop, LoopStopped


class AioLoopTests(TestCase):
    def setUp(self) -> None:
        self.pool = ThreadPool(minthreads=0, maxthreads=1, name="test-aio-loop")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.loop = AioLoop(reactor)
        self.loop.start(self.pool)
        self.addCleanup(self.loop.stop)

    def test_hand_offs_run_on_the_loop_thread_in_order(self) -> None:
        seen: list[tuple[int, str]] = []
        done = threading.Event()
        for i in range(200):
            self.loop.call_soon(lambda i=i: seen.append((i, threading.current_thread().name)))
        self.loop.call_soon(done.set)
        self.assertTrue(done.wait(5))
        self.assertEqual([i for i, _ in seen], list(range(200)))
        self.assertEqual({name for _, name in seen} & {threading.current_thread().name}, set())

    def test_many_hand_offs_share_one_wake_up(self) -> None:
        wakes = []
        loop = self.loop._loop
        real = loop.call_soon_threadsafe
        self.patch(loop, "call_soon_threadsafe", lambda *a: (wakes.append(a), real(*a)))
        gate, done = threading.Event(), threading.Event()
        self.loop.call_soon(gate.wait, 5)  # holds the loop while the rest queue up
        for _ in range(100):
            self.loop.call_soon(lambda: None)
        gate.set()
        self.loop.call_soon(done.set)
        self.assertTrue(done.wait(5))
        self.assertLessEqual(len(wakes), 3)

    async def test_a_task_result_and_its_exception_come_back_as_deferreds(self) -> None:
        async def answer(x: int) -> int:
            await asyncio.sleep(0.01)
            return x * 2

        async def fail() -> None:
            raise ValueError("refused")

        self.assertEqual(await self.loop.submit(answer, 21), 42)
        with self.assertRaises(ValueError):
            await self.loop.submit(fail)
        self.assertEqual(self.loop.active, 0)

    async def test_stop_cancels_what_still_runs_and_refuses_more(self) -> None:
        async def forever() -> None:
            await asyncio.sleep(3600)

        running = self.loop.submit(forever)
        self.loop.stop()
        with self.assertRaises(LoopStopped):
            await running
        self.assertFalse(self.loop.running)
        with self.assertRaises(LoopStopped):
            await self.loop.submit(forever)
        self.loop.call_soon(lambda: None)  # dropped, never raises into the caller
        self.assertRaises(LoopStopped, self.loop.run_sync, forever)

    def test_run_sync_returns_from_the_loop(self) -> None:
        async def where() -> str:
            return threading.current_thread().name

        self.assertNotEqual(self.loop.run_sync(where), threading.current_thread().name)
