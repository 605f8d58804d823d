"""Launch pacing of async batches: once items are known to take a while, launches are spread out, not bunched."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

import turbodspy as dspy
from turbodspy.primitives import pacing
from turbodspy.primitives.pacing import MIN_GAP_SECONDS, SPREAD, LaunchPacer
from turbodspy.primitives.parallel import BatchCancelledError, ParallelExecutor


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def known(pacer: LaunchPacer, seconds: float, items: int = 8) -> LaunchPacer:
    for _ in range(items):
        pacer.record(seconds)
    return pacer


def test_launches_go_at_once_until_item_times_are_known():
    pacer = LaunchPacer(concurrency=4, clock=FakeClock())
    assert [pacer.delay(0.2) for _ in range(10)] == [0.0] * 10
    known(pacer, 0.2, items=7)  # one short of the first estimate
    assert pacer.delay(0.2) == 0.0


def test_launches_after_typical_items_are_spaced_by_a_share_of_their_time():
    clock = FakeClock()
    pacer = known(LaunchPacer(concurrency=4, clock=clock), 0.2)
    gap = SPREAD * 0.2 / 4
    # Four items finishing at the same moment launch their next ones a gap apart, not all at once.
    assert [pacer.delay(0.2) for _ in range(4)] == pytest.approx([0.0, gap, 2 * gap, 3 * gap])
    # A launch after the reserved times have passed goes at once and reserves from its own time.
    clock.now += 1.0
    assert pacer.delay(0.2) == 0.0
    clock.now += gap / 2
    assert pacer.delay(0.2) == pytest.approx(gap / 2)


def test_a_launch_after_a_quick_item_goes_at_once_and_reserves_nothing():
    # A cache hit or a quick failure does not end with a burst of responses: nothing to spread.
    pacer = known(LaunchPacer(concurrency=4, clock=FakeClock()), 0.2)
    gap = SPREAD * 0.2 / 4
    assert pacer.delay(0.2) == 0.0
    assert [pacer.delay(0.001) for _ in range(5)] == [0.0] * 5
    assert pacer.delay(0.2) == pytest.approx(gap)


def test_batches_with_few_in_flight_are_not_paced():
    for concurrency in (1, 2, 3):
        pacer = known(LaunchPacer(concurrency=concurrency, clock=FakeClock()), 0.2)
        assert pacer.gap == 0.0
        assert [pacer.delay(0.2) for _ in range(3)] == [0.0] * 3
    assert known(LaunchPacer(concurrency=pacing.MIN_CONCURRENCY, clock=FakeClock()), 0.2).gap > 0


def test_the_first_items_of_a_wide_batch_set_the_gap_then_every_wave_updates_it():
    pacer = known(LaunchPacer(concurrency=32, clock=FakeClock()), 0.2)  # the first wave's earliest eight
    assert pacer.gap == pytest.approx(SPREAD * 0.2 / 32)
    known(pacer, 0.4, items=31)
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
    pacer = known(LaunchPacer(concurrency=32, clock=FakeClock()), MIN_GAP_SECONDS, items=64)
    assert pacer.gap == 0.0
    assert [pacer.delay(1.0) for _ in range(5)] == [0.0] * 5


def test_when_items_get_quicker_later_launches_stop_keeping_the_old_gap():
    clock = FakeClock()
    pacer = known(LaunchPacer(concurrency=8, clock=clock), 1.0)
    old_gap = SPREAD * 1.0 / 8
    assert [pacer.delay(1.0) for _ in range(8)] == pytest.approx([i * old_gap for i in range(8)])
    known(pacer, 0.1)  # a provider that was stalling answers quickly again
    new_gap = SPREAD * 0.1 / 8
    assert pacer.gap == pytest.approx(new_gap)
    # The next paced launch queues behind the eight waiting at the new spacing, not at the old one.
    assert pacer.delay(0.1) == pytest.approx(8 * new_gap)
    pacer = known(LaunchPacer(concurrency=8, clock=FakeClock()), 0.4)
    known(pacer, 1e-5)  # the rest of the batch is served from the cache
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


def test_an_async_batch_spreads_its_launches_once_items_are_known_to_be_slow(monkeypatch):
    reserved = []  # the launch time of each launch the batch asked the pacer to space out
    original_delay = LaunchPacer.delay

    def observed_delay(self, previous):
        delay = original_delay(self, previous)
        if delay > 0:
            reserved.append((self._clock() + delay, self.gap))
        return delay

    monkeypatch.setattr(LaunchPacer, "delay", observed_delay)
    concurrency, delay = 8, 0.04
    program = Sleepy(delay)
    results = program.batch(examples(range(80)), concurrency=concurrency, disable_progress_bar=True)
    assert [r.y for r in results] == [x * x for x in range(80)]
    starts = sorted(program.starts.values())
    # The first wave goes at once (nothing is known yet)...
    assert starts[concurrency - 1] - starts[0] < delay / 2
    # ...and later launches were reserved at least a gap apart: the gap of the estimate they were reserved under
    # (a new, shorter estimate moves later launches up behind the waiting ones), which items of at least `delay`
    # make at least `gap`.
    gap = SPREAD * delay / concurrency
    assert len(reserved) >= concurrency
    assert all(estimate >= gap * 0.999 for _, estimate in reserved)
    same_estimate = [(a, b, g) for (a, g), (b, h) in itertools.pairwise(reserved) if g == h]
    assert same_estimate and all(b - a >= g * 0.999 for a, b, g in same_estimate)
    # They did start spread out. Unpaced, each wave starts in a bunch: 56 of these 63 launches come within half
    # a gap of the one before. Paced, none do; with another thread holding the GIL in 5 ms turns (a busy
    # process), up to 26.
    later = starts[2 * concurrency :]
    assert sum(b - a < gap / 2 for a, b in itertools.pairwise(later)) <= 2 * len(later) // 3


def test_a_launch_waiting_for_its_time_does_not_start_once_the_batch_is_stopped():
    # Ctrl-C sets `cancel_jobs` from another thread without cancelling the workers: a launch asleep in the
    # pacer must see it when it wakes.
    executor = ParallelExecutor(disable_progress_bar=True)
    starts, stopped = {}, {}

    async def item(x):
        starts[x] = time.monotonic()
        await asyncio.sleep(0.4 if x < 8 else 0.01)
        if x == 20:
            stopped["at"] = time.monotonic()
            executor.cancel_jobs.set()
        return x

    with pytest.raises(BatchCancelledError):
        executor.execute_async(item, list(range(100)), 8)
    assert not [x for x, t in starts.items() if t > stopped["at"]]


def test_a_batch_stopped_by_max_errors_starts_nothing_after():
    program = Sleepy(0.04)
    xs = [*range(16), -1, *range(100, 140)]
    with pytest.raises(BatchCancelledError):
        program.batch(examples(xs), concurrency=8, max_errors=1, disable_progress_bar=True)
    stopped = program.starts[-1] + 0.04  # when the failing item ended
    time.sleep(0.1)  # anything still scheduled would have started by now
    assert not [x for x, t in program.starts.items() if t > stopped + 0.01]
