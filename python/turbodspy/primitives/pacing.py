"""Launch pacing for async batches: keeps the items in flight spread out over the time an item takes.

Why: an async batch starts `concurrency` items at once, so their responses come back together, and the one
event loop handles them back to back (each costs a few ms of CPU in LiteLLM and the HTTP client). Each item then
starts its next call when its turn in that burst comes, so the next responses come back just as bunched: with a
provider of steady latency the burst never spreads out, and every item waits for the ones before it in it, at
each of its steps on the loop. Launches spaced at least `SPREAD` x (typical item time / concurrency) apart
spread that work out instead, so a response is handled soon after it arrives. Measured: an uncached batch of
1,000 calls, 32 in flight, against a 200 ms local server went from 84-89% to 92-94% of the ideal rate.

The spacing does not hold back a batch whose slots are busy: launches may come twice as often as items of the
typical (a low quantile) time finish. Items faster than `MIN_GAP_SECONDS` per slot (cache hits, CPU-bound
work) are not paced at all: their batches stay as fast as without pacing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Launches are spread over this share of the typical item time, so they wait for a free slot, not the pacer.
SPREAD = 0.5
# Gaps shorter than this are below what the event loop's timers can keep; pacing is then off.
MIN_GAP_SECONDS = 0.0005
# The typical item time: this quantile of the recent items' times, so a few slow items do not slow launches.
_TYPICAL_QUANTILE = 0.25
_FIRST_WINDOW = 8


class LaunchPacer:
    """Reserves evenly spaced launch times for the items of one async batch, shared by all its workers."""

    def __init__(self, concurrency: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self._concurrency = concurrency
        self._clock = clock
        # First estimated after the first few items (the first wave's earliest, so its second wave is paced
        # already), then re-estimated after every `concurrency` items (at least 8), from those items' times.
        self._window = _FIRST_WINDOW
        self._later_windows = max(concurrency, _FIRST_WINDOW)
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
            self._window = self._later_windows

    def delay(self) -> float:
        """Seconds the next launch waits for its reserved time (0 when it may go now)."""
        now = self._clock()
        launch = now if now > self._next_launch else self._next_launch
        self._next_launch = launch + self.gap
        return launch - now
