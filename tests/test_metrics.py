"""The metrics registry under --workers (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

import voiced.metrics
from voiced.metrics import Metrics


class MultiprocessTests(SynchronousTestCase):
    def test_a_worker_starts_beside_one_whose_metrics_file_is_still_empty(self) -> None:
        shared = tempfile.mkdtemp(prefix="voiced-metrics-")
        # What a worker starting at the same moment leaves for an instant: its file, empty.
        open(os.path.join(shared, "counter_4242.db"), "wb").close()
        self.patch(voiced.metrics, "multiprocess_dir", lambda: shared)
        metrics = Metrics()  # registering the shared collector reads no file (a worker died of it)
        self.assertIsNotNone(metrics.registry)


class LabelledCountsTests(SynchronousTestCase):
    def test_counts_by_label_values_land_in_the_served_counter(self) -> None:
        from prometheus_client import generate_latest

        metrics = Metrics()
        for decision, reason in [("wait", "awaiting_final"), ("finish", "silence"), ("wait", "awaiting_final")]:
            metrics.turn_end_decisions.inc(decision, reason)
        metrics.barge_in_decisions.inc("ignore", "echo")
        served = generate_latest(metrics.registry).decode()
        self.assertIn('voiced_turn_end_decisions_total{decision="wait",reason="awaiting_final"} 2.0', served)
        self.assertIn('voiced_turn_end_decisions_total{decision="finish",reason="silence"} 1.0', served)
        self.assertIn('voiced_barge_in_decisions_total{decision="ignore",reason="echo"} 1.0', served)

    def test_wrong_label_values_are_refused_as_labels_would(self) -> None:
        with self.assertRaises(ValueError):
            Metrics().turn_end_decisions.inc("finish")
