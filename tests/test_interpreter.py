"""voiced.interpreter: the switch interval the service sets, and the frozen start-up heap."""

from __future__ import annotations

import gc
import sys
import weakref

from twisted.trial.unittest import TestCase

from voiced.interpreter import GIL_SWITCH_INTERVAL_S, freeze_start_up, hand_over_the_gil_promptly


class InterpreterTests(TestCase):
    def test_the_switch_interval_is_set_and_the_old_one_returned(self) -> None:
        before = sys.getswitchinterval()
        self.addCleanup(sys.setswitchinterval, before)
        self.assertEqual(hand_over_the_gil_promptly(), before)
        self.assertAlmostEqual(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S)
        self.assertLess(GIL_SWITCH_INTERVAL_S, 0.005)  # below CPython's default, or it is no change

    def test_what_lives_at_start_up_is_frozen_and_garbage_is_not(self) -> None:
        self.addCleanup(gc.unfreeze)

        class Node:
            pass

        alive, garbage = Node(), Node()
        garbage.me = garbage  # a cycle: only a collection frees it
        gone = weakref.ref(garbage)
        del garbage
        freeze_start_up()
        self.assertIsNone(gone())  # collected before the freeze, not kept for ever
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertFalse(any(o is alive for o in gc.get_objects()))  # frozen: in no generation a collection walks
