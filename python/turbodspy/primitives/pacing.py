"""Launch pacing for async batches: keeps the items in flight spread out over the time an item takes.

Why: an async batch starts `concurrency` items at once, so their responses come back together, and the one
event loop handles them back to back (each costs a few ms of CPU in LiteLLM and the HTTP client). Each item then
starts its next call when its turn in that burst comes, so the next responses come back just as bunched: with a
provider of steady latency the burst never spreads out, and every item waits for the ones before it in it. In
the burst the loop is fully busy, so any jitter adds up. Spacing launches at least a fraction of (typical item
time / concurrency) apart spreads them over the whole round trip instead: the loop's work arrives evenly and an
item's response is handled when it arrives.

The spacing never limits throughput below what the slots allow: launches may come `1 / SPREAD` times faster than
items finish on average. Items faster than `MIN_GAP_SECONDS` per slot (cache hits, CPU-bound work) are not
paced at all: their batches stay as fast as without pacing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Launches are spread over this fraction of the typical item time, so they wait for a free slot, not the pacer.
SPREAD = 0.5
# Gaps shorter than this are below what the event loop's timers can keep; pacing is then off.
MIN_GAP_SECONDS = 0.0005
# The typical item time: this quantile of the recent items' times, so a few slow items do not slow launches.
_TYPICAL_QUANTILE = 0.25


class LaunchPacer:
    """Reserves evenly spaced launch times for the items of one async batch, shared by all its workers."""

    def __init__(self, concurrency: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self._concurrency = concurrency
        self._clock = clock
        # Re-estimated after every `concurrency` items (at least 8), from the times of those items.
        self._window = max(concurrency, 8)
        self._recent: list[float] = []
        self.gap = 0.0  # seconds between launches; 0 while unknown or too small to matter
        self._next_launch = 0.0

    def record(self, seconds: float) -> None:
        """An item took `seconds` from its launch to its end."""
        recent = self._recent
        recent.append(seconds)
        if len(recent) >= self._window:
            recent.sort()
            typical = recent[int(len(recent) * _TYPICAL_QUANTILE)]
            gap = SPREAD * typical / self._concurrency
            self.gap = gap if gap >= MIN_GAP_SECONDS else 0.0
            recent.clear()

    def delay(self) -> float:
        """Seconds the next launch waits for its reserved time (0 when it may go now)."""
        now = self._clock()
        launch = now if now > self._next_launch else self._next_launch
        self._next_launch = launch + self.gap
        return launch - now
