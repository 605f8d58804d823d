"""Launch pacing of async batches: once items are known to take a while, launches are spread out, not bunched."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

import turbodspy as dspy
from turbodspy.primitives.pacing import MIN_GAP_SECONDS, SPREAD, LaunchPacer
from turbodspy.primitives.parallel import BatchCancelledError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_launches_go_at_once_until_item_times_are_known():
    pacer = LaunchPacer(concurrency=4, clock=FakeClock())
    assert [pacer.delay() for _ in range(10)] == [0.0] * 10
    for _ in range(7):  # one short of a full window (8 items)
        pacer.record(0.2)
    assert pacer.delay() == 0.0


def test_launches_are_spaced_by_a_share_of_the_typical_item_time():
    clock = FakeClock()
    pacer = LaunchPacer(concurrency=4, clock=clock)
    for _ in range(8):
        pacer.record(0.2)
    gap = SPREAD * 0.2 / 4
    # Four items finishing at the same moment launch one gap apart, not all at once.
    assert [pacer.delay() for _ in range(4)] == pytest.approx([0.0, gap, 2 * gap, 3 * gap])
    # A launch after the reserved times have passed goes at once and reserves from its own time.
    clock.now += 1.0
    assert pacer.delay() == 0.0
    clock.now += gap / 2
    assert pacer.delay() == pytest.approx(gap / 2)


def test_the_first_items_of_a_wide_batch_set_the_gap_then_every_wave_updates_it():
    pacer = LaunchPacer(concurrency=32, clock=FakeClock())
    for _ in range(8):  # the first wave's earliest: its second wave is paced already
        pacer.record(0.2)
    assert pacer.gap == pytest.approx(SPREAD * 0.2 / 32)
    for _ in range(31):
        pacer.record(0.4)
    assert pacer.gap == pytest.approx(SPREAD * 0.2 / 32)  # a wave's worth is not in yet
    pacer.record(0.4)
    assert pacer.gap == pytest.approx(SPREAD * 0.4 / 32)


def test_a_few_slow_items_do_not_slow_launches():
    pacer = LaunchPacer(concurrency=4, clock=FakeClock())
    for seconds in [0.2] * 6 + [30.0] * 2:  # two timeouts among eight
        pacer.record(seconds)
    assert pacer.gap == pytest.approx(SPREAD * 0.2 / 4)


def test_fast_items_are_not_paced():
    # Cache hits take microseconds: a gap that small would only cost a timer per launch.
    pacer = LaunchPacer(concurrency=32, clock=FakeClock())
    for _ in range(64):
        pacer.record(MIN_GAP_SECONDS)  # per item; per slot far below the minimum gap
    assert pacer.gap == 0.0
    assert [pacer.delay() for _ in range(5)] == [0.0] * 5


def test_the_estimate_follows_items_that_become_fast():
    pacer = LaunchPacer(concurrency=8, clock=FakeClock())
    for _ in range(8):
        pacer.record(0.4)
    assert pacer.gap > 0
    for _ in range(8):  # the rest of the batch is served from the cache
        pacer.record(1e-5)
    assert pacer.gap == 0.0


class Sleepy(dspy.Module):
    """An async program whose calls take `delay` seconds and record when each started."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.starts: dict[int, float] = {}

    def forward(self, x):
        raise AssertionError("the async path should run")

    async def aforward(self, x):
        self.starts[x] = time.monotonic()
        await asyncio.sleep(self.delay)
        if x < 0:
            raise ValueError(f"negative: {x}")
        return dspy.Prediction(y=x * x)


def examples(xs):
    return [dspy.Example(x=x).with_inputs("x") for x in xs]


def test_an_async_batch_spreads_its_launches_once_items_are_known_to_be_slow():
    concurrency, delay = 8, 0.04
    program = Sleepy(delay)
    results = program.batch(examples(range(40)), concurrency=concurrency, disable_progress_bar=True)
    assert [r.y for r in results] == [x * x for x in range(40)]
    starts = sorted(program.starts.values())
    # The first wave goes at once (nothing is known yet)...
    assert starts[concurrency - 1] - starts[0] < delay / 2
    # ...and after two waves' worth of items, launches keep the gap their times call for. Unpaced, each wave
    # would start in a bunch, most launches within a fraction of a millisecond of the one before; a loop that
    # stalls for a moment (a busy machine) may still start two paced launches close together, rarely.
    gap = SPREAD * delay / concurrency
    later = starts[2 * concurrency :]
    bunched = sum(b - a < gap / 2 for a, b in itertools.pairwise(later))
    assert bunched <= len(later) // 4


def test_items_waiting_for_their_launch_do_not_start_after_the_batch_stops():
    program = Sleepy(0.04)
    xs = [*range(16), -1, *range(100, 140)]
    with pytest.raises(BatchCancelledError):
        program.batch(examples(xs), concurrency=8, max_errors=1, disable_progress_bar=True)
    stopped = program.starts[-1] + 0.04  # when the failing item ended
    time.sleep(0.1)  # anything still scheduled would have started by now
    assert not [x for x, t in program.starts.items() if t > stopped + 0.01]
