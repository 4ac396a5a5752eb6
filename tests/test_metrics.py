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
