"""Drift statistics on generated snapshots: fresh samples of the reference population raise no
drift (the false-alarm rate over resamples), a shifted population drifts on every signal, and
embeddings moved alone drift while the tabular features do not.

Generated features and vectors (fixed seeds) stand in for a catalog: the monitor's own
statistics are under test here; tests/test_monitor_e2e.py runs it on real photos.
"""

from __future__ import annotations

import pytest
from generated import population, with_top1

from vlclip.config import MonitorParams
from vlclip.monitor.drift import compare
from vlclip.monitor.snapshot import Snapshot

SIZE = 200
RESAMPLES = (11, 12, 13)


@pytest.fixture(scope="module")
def reference() -> Snapshot:
    return with_top1(population(1, SIZE))


def signals(reference: Snapshot, current: Snapshot) -> dict[str, dict]:
    summary = compare(reference, with_top1(current, reference), MonitorParams(), "t", "x").summary
    return {s["name"]: s for s in summary["signals"]}


def test_fresh_samples_of_the_reference_population_raise_at_most_one_false_alarm(reference):
    alarms = {
        seed: [
            name
            for name, signal in signals(reference, population(seed, SIZE)).items()
            if signal["drift_detected"]
        ]
        for seed in RESAMPLES
    }
    assert sum(bool(found) for found in alarms.values()) <= 1, alarms


def test_a_shifted_population_drifts_on_every_signal(reference):
    found = signals(reference, population(2, SIZE, shift=1.0))
    assert all(s["drift_detected"] for s in found.values()), found


def test_embeddings_moved_alone_drift_while_the_tables_do_not(reference):
    found = signals(reference, population(3, SIZE, vector_shift=0.4))
    assert found["image embeddings"]["drift_detected"]
    assert not found["text embeddings"]["drift_detected"]
    for name in ("catalog features", "titles and descriptions", "query photos"):
        assert not found[name]["drift_detected"], found[name]
