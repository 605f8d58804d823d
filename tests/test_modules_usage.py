"""Usage tracking: per-LM totals, nested trackers rolling up, thread safety."""

from __future__ import annotations

import threading

import turbodspy as dspy
from turbodspy.utils.usage_tracker import UsageTracker, track_usage


def test_totals_sum_counts_merge_nested_and_skip_flags():
    tracker = UsageTracker()
    tracker.add_usage("m", {"prompt_tokens": 10, "completion_tokens": 5, "details": {"cached": 1}, "is_byok": True})
    tracker.add_usage("m", {"prompt_tokens": 1, "completion_tokens": 2, "details": {"cached": 2}, "is_byok": True})
    tracker.add_usage("other", {"total_tokens": 7})
    tracker.add_usage("ignored", {})
    totals = tracker.get_total_tokens()
    assert totals == {
        "m": {"prompt_tokens": 11, "completion_tokens": 7, "details": {"cached": 3}, "is_byok": True},
        "other": {"total_tokens": 7},
    }


def test_track_usage_scopes_settings_and_rolls_up_into_parent():
    assert dspy.settings.usage_tracker is None
    with track_usage() as outer:
        assert dspy.settings.usage_tracker is outer
        dspy.settings.usage_tracker.add_usage("m", {"total_tokens": 1})
        with track_usage() as inner:
            dspy.settings.usage_tracker.add_usage("m", {"total_tokens": 2})
        assert inner.get_total_tokens() == {"m": {"total_tokens": 2}}
        assert dspy.settings.usage_tracker is outer
    assert outer.get_total_tokens() == {"m": {"total_tokens": 3}}
    assert dspy.settings.usage_tracker is None


def test_concurrent_adds_are_all_counted():
    tracker = UsageTracker()

    def add():
        for _ in range(1000):
            tracker.add_usage("m", {"total_tokens": 1})

    threads = [threading.Thread(target=add) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tracker.get_total_tokens() == {"m": {"total_tokens": 8000}}
