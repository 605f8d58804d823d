"""The disk tier's Python face: records round-trip, statistics, defaults, and damage treated as misses."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turbodspy.clients.disk_cache import DiskCache, default_cache_dir, default_size_limit

sys.path.insert(0, str(Path(__file__).parent))
from _disk_worker import key, record


def test_records_round_trip_exactly_across_processes(tmp_path):
    odd = {
        "response": {"choices": [{"message": {"content": 'héllo ✓ \u0000 "quoted" 🙂'}}], "n": 10**30, "f": 0.1},
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        "cost": 0.00125,
        "model": "m",
        "extra": [None, True, False, -1.5e-300, {"nested": []}, -(2**63), 2**64, float("inf")],
    }
    cache = DiskCache(tmp_path)
    assert cache.get(key(1)) is None
    cache.put(key(1), odd)
    assert cache.get(key(1)) == odd
    assert key(1) in cache and key(2) not in cache
    cache.close()
    assert DiskCache(tmp_path).get(key(1)) == odd


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_any_json_native_record_round_trips(tmp_path, record):
    cache = DiskCache(tmp_path)
    k = hashlib.sha256(repr(record).encode()).hexdigest()
    cache.put(k, record)
    got = DiskCache(tmp_path).get(k)
    assert got == record
    assert json.dumps(got, sort_keys=True) == json.dumps(record, sort_keys=True)  # same types, not just equal


def test_stats_count_hits_misses_and_what_hits_saved(tmp_path):
    cache = DiskCache(tmp_path)
    for n in range(10):
        cache.put(key(n), record(n))
    for n in range(15):
        cache.get(key(n))
    other = DiskCache(tmp_path)  # statistics live in the directory, shared by every process
    stats = other.stats()
    assert stats["entries"] == 10
    assert (stats["hits"], stats["misses"]) == (10, 5)
    assert stats["tokens_saved"] == sum(record(n)["usage"]["total_tokens"] for n in range(10))
    assert stats["cost_saved"] == pytest.approx(sum(record(n)["cost"] for n in range(10)))
    assert stats["bytes"] > sum(len(str(record(n))) for n in range(10))


def test_threads_sharing_one_cache_lose_nothing(tmp_path):
    cache = DiskCache(tmp_path)
    errors: list[str] = []

    def work(me: int) -> None:
        for n in range(me * 150, me * 150 + 300):  # overlapping ranges
            cache.put(key(n), record(n))
            got = cache.get(key(n))
            if got != record(n):
                errors.append(f"thread {me}: key {n} read back {got!r:.60}")

    threads = [threading.Thread(target=work, args=(me,)) for me in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(DiskCache(tmp_path).get(key(n)) == record(n) for n in range(7 * 150 + 300))


def test_a_relative_cache_directory_stays_the_same_directory_after_a_chdir(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    cache = DiskCache("relative-cache")
    cache.put(key(1), record(1))
    assert cache.get(key(1)) == record(1)  # the store is open, its segment mapped
    os.chdir(tmp_path / "elsewhere")
    cache.put(key(2), record(2))
    assert cache.get(key(1)) == record(1) and cache.get(key(2)) == record(2)
    assert not (tmp_path / "elsewhere" / "relative-cache").exists()
    assert DiskCache(tmp_path / "relative-cache").get(key(2)) == record(2)


def test_a_second_put_of_a_key_replaces_its_record(tmp_path):
    cache = DiskCache(tmp_path)
    cache.put(key(1), record(1))
    cache.put(key(1), record(2))
    assert DiskCache(tmp_path).get(key(1)) == record(2)
    assert cache.stats()["entries"] == 1


def test_bad_keys_and_records_are_refused_clearly(tmp_path):
    cache = DiskCache(tmp_path)
    with pytest.raises(ValueError, match="64 hex characters"):
        cache.put("not-a-key", record(1))
    with pytest.raises(TypeError, match="must be a dict"):
        cache.put(key(1), ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"JSON-native.*set"):
        cache.put(key(1), {"response": {"ids": {1, 2}}})
    with pytest.raises(TypeError, match="dict key is int"):
        cache.put(key(1), {"response": {1: "one"}})
    assert cache.get(key(1)) is None, "a refused record stores nothing"
    with pytest.raises(ValueError, match="size_limit_bytes"):
        DiskCache(tmp_path, size_limit_bytes=0)


def test_defaults_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TURBODSPY_CACHEDIR", raising=False)
    monkeypatch.delenv("TURBODSPY_CACHE_LIMIT", raising=False)
    assert default_cache_dir() == Path.home() / ".turbodspy_cache"
    assert default_size_limit() == 30 * 1024**3
    monkeypatch.setenv("TURBODSPY_CACHEDIR", str(tmp_path / "here"))
    monkeypatch.setenv("TURBODSPY_CACHE_LIMIT", "1048576")
    cache = DiskCache()
    assert (cache.directory, cache.size_limit_bytes) == (tmp_path / "here", 1048576)
    assert not (tmp_path / "here").exists(), "opening is lazy"
    monkeypatch.setenv("TURBODSPY_CACHE_LIMIT", "500MB")
    assert default_size_limit() == 500 * 1024**2
    monkeypatch.setenv("TURBODSPY_CACHE_LIMIT", "30 GiB")
    assert default_size_limit() == 30 * 1024**3
    monkeypatch.setenv("TURBODSPY_CACHE_LIMIT", "lots")
    with pytest.raises(ValueError, match="TURBODSPY_CACHE_LIMIT"):
        default_size_limit()


def test_the_size_limit_evicts_oldest_entries_first(tmp_path):
    limit = 3 * 1024**2
    cache = DiskCache(tmp_path, limit)
    for n in range(1500):
        cache.put(key(n), record(n, 5000))
    stats = cache.stats()
    assert stats["bytes"] <= limit
    assert cache.get(key(1499)) == record(1499, 5000)
    assert cache.get(key(0)) is None
    kept = [n for n in range(1500) if cache.get(key(n)) is not None]
    assert kept == list(range(kept[0], 1500)), "eviction removes the oldest entries, keeping a contiguous newest run"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux /proc")
def test_a_reader_lets_go_of_evicted_segments_so_their_space_is_freed(tmp_path):
    reader, writer = DiskCache(tmp_path, 3 * 1024**2), DiskCache(tmp_path, 3 * 1024**2)
    writer.put(key(0), record(0, 5000))
    assert reader.get(key(0)) is not None  # the reader now maps the first segment
    for n in range(1, 1500):
        writer.put(key(n), record(n, 5000))
    assert not (tmp_path / "seg-0000000001.tds").exists()
    reader.get(key(1))
    deleted = [
        line
        for line in Path("/proc/self/maps").read_text().splitlines()
        if str(tmp_path) in line and "(deleted)" in line
    ]
    assert deleted == []


def test_clear_removes_everything(tmp_path):
    cache = DiskCache(tmp_path)
    for n in range(20):
        cache.put(key(n), record(n))
    cache.clear()
    assert all(cache.get(key(n)) is None for n in range(20))
    assert cache.stats()["entries"] == 0
    assert not list(tmp_path.glob("seg-*"))


def _fill(directory: Path, count: int = 300) -> None:
    cache = DiskCache(directory, 64 * 1024**2)
    for n in range(count):
        cache.put(key(n), record(n))
    cache.close()


def _reads(directory: Path, count: int = 300) -> tuple[int, int]:
    """(right values, misses); a wrong value fails the test."""
    cache = DiskCache(directory)
    right = missing = 0
    for n in range(count):
        got = cache.get(key(n))
        if got is None:
            missing += 1
        else:
            assert got == record(n), f"wrong value for key {n}"
            right += 1
    cache.close()
    return right, missing


@pytest.mark.parametrize("seed", range(6))
def test_flipped_bytes_in_segments_are_misses_and_verify_reports_them(tmp_path, seed):
    _fill(tmp_path)
    rng = random.Random(seed)
    segment = sorted(tmp_path.glob("seg-*.tds"))[0]
    data = bytearray(segment.read_bytes())
    for _ in range(rng.randint(1, 5)):
        data[rng.randrange(32, len(data))] ^= rng.randint(1, 255)
    segment.write_bytes(bytes(data))  # damage in place; turbodspy itself never rewrites a segment
    right, missing = _reads(tmp_path)
    report = DiskCache(tmp_path).verify()
    # Damage is found exactly when it cost records (a flip in padding costs nothing and is not damage).
    assert (missing > 0) == (report["bad"] + report["interrupted_writes"] > 0)
    assert report["bad"] == 0 or any((tmp_path / "quarantine").iterdir())
    assert report["entries"] == right
    assert _reads(tmp_path) == (right, missing)


def test_a_truncated_segment_costs_only_the_records_cut_off(tmp_path):
    _fill(tmp_path)
    segment = sorted(tmp_path.glob("seg-*.tds"))[0]
    size = segment.stat().st_size
    os.truncate(segment, size * 2 // 3)
    right, missing = _reads(tmp_path)
    assert right > 150 and missing > 50
    report = DiskCache(tmp_path).verify()
    assert report["entries"] == right


def test_damage_in_the_index_is_a_miss_and_verify_rebuilds_it(tmp_path):
    _fill(tmp_path)
    shards = sorted(tmp_path.glob("index-*.tdi"))
    assert len(shards) == 16
    rng = random.Random(7)
    for shard in shards:
        data = bytearray(shard.read_bytes())
        live = [i for i in range(4096, len(data), 32) if any(data[i : i + 8])]
        for slot in rng.sample(live, min(2, len(live))):
            data[slot + rng.randrange(32)] ^= 0x10
        shard.write_bytes(bytes(data))
    assert _reads(tmp_path)[1] >= 1
    report = DiskCache(tmp_path).verify()
    assert report["damaged_index_slots"] >= 1 and report["index_rebuilt"]
    assert _reads(tmp_path) == (300, 0), "every record was intact, so the rebuilt index finds them all"
    for shard in shards:
        data = bytearray(shard.read_bytes())
        data[:8] = b"garbage!"
        shard.write_bytes(bytes(data))
    assert _reads(tmp_path) == (0, 300)
    assert DiskCache(tmp_path).verify()["index_was_unreadable"]
    assert _reads(tmp_path) == (300, 0)


@pytest.mark.skipif(not os.path.exists("/proc/self/mounts"), reason="Linux mount table")
def test_the_filesystem_of_a_directory_is_its_longest_mount():
    from turbodspy.clients import disk_cache

    assert disk_cache._filesystem_type(Path("/proc/self")) == "proc"  # not "/"'s filesystem
    assert disk_cache._filesystem_type(Path("/proc/not/there/yet")) == "proc"  # the nearest existing parent


@pytest.mark.skipif(not os.path.exists("/proc/self/mounts"), reason="Linux mount table")
def test_a_directory_on_a_network_filesystem_is_used_memory_only(tmp_path, monkeypatch):
    from turbodspy.clients import disk_cache
    from turbodspy.clients.disk_cache import DiskCacheWarning

    fstype = disk_cache._filesystem_type(tmp_path)
    assert fstype
    # Declare this machine's own filesystem a network one: the detection itself stays real.
    monkeypatch.setattr(disk_cache, "_NETWORK_FILESYSTEMS", frozenset({fstype}))
    cache = DiskCache(tmp_path / "cache")
    with pytest.warns(DiskCacheWarning, match=f"on a {fstype} network filesystem"):
        assert cache.get(key(1)) is None
    cache.put(key(1), record(1))
    assert cache.get(key(1)) is None
    assert not (tmp_path / "cache").exists()  # nothing was written there
