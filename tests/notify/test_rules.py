"""Who hears of a run: Sundial's notify_when as it was meant, and the alert arithmetic."""

from __future__ import annotations

import pytest

from taskd.notify import rules


@pytest.mark.parametrize(
    ("when", "previous", "current", "told"),
    [
        ("always", "succeeded", "succeeded", True),
        ("on_state_change_and_failures", "succeeded", "succeeded", False),
        ("on_state_change_and_failures", "failed", "failed", True),
        ("on_state_change_and_failures", "failed", "succeeded", True),
        ("on_state_change", "failed", "failed", False),
        ("on_state_change", None, "succeeded", True),  # the first run is a change
        ("on_failure", "failed", "succeeded", False),  # no recovery mail (Sundial's quirk)
        ("on_failure", "succeeded", "failed", True),
        ("never", "succeeded", "failed", False),
    ],
)
def test_notify_when(when, previous, current, told):
    assert rules.wants(when, previous, current) is told


def test_streak_counts_failures_at_the_head_only():
    assert rules.streak(["failed", "failed", "succeeded", "failed"]) == 2
    assert rules.streak(["succeeded", "failed"]) == 0
    assert rules.streak([]) == 0


def test_usual_needs_five_runs_and_has_a_margin():
    assert rules.p95([1.0, 1.0, 1.0, 1.0]) is None
    assert rules.p95([1.0, 2.0, 3.0, 4.0, 100.0]) == 100.0
    assert rules.p95([float(i) for i in range(1, 21)]) == 19.0
    assert rules.usual_limit(0.1) == pytest.approx(1.1)
    assert rules.usual_limit(100.0) == pytest.approx(120.0)
