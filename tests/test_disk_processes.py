"""The disk cache under real concurrent processes: writers, readers, SIGKILL, clear and eviction."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from turbodspy.clients.disk_cache import DiskCache

sys.path.insert(0, str(Path(__file__).parent))
from _disk_worker import key, record

WORKER = str(Path(__file__).parent / "_disk_worker.py")


def spawn(*args: object, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, WORKER, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def test_eight_processes_writing_and_reading_overlapping_keys_lose_nothing(tmp_path):
    writers, count, step = 8, 2000, 1500  # each writer's range overlaps the next one's by 500 keys
    procs = [spawn("writer", tmp_path, me, writers, count, step) for me in range(writers)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"writer failed ({p.returncode}): {out}{err}"
    total = (writers - 1) * step + count
    cache = DiskCache(tmp_path)
    assert all(cache.get(key(n)) == record(n) for n in range(total))
    assert cache.stats()["entries"] == total
    report = cache.verify()
    assert (report["bad"], report["entries"]) == (0, total)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_and_its_parent_write_one_cache_safely(tmp_path):
    # The child inherits the parent's open lock file; it must not inherit the parent's lock with it, or both
    # write at once and lose entries. Small records keep both inside the lock most of the time.
    count = 20_000
    cache = DiskCache(tmp_path)
    cache.put(key(0), {"n": 0})
    pid = os.fork()
    if pid == 0:  # the child
        try:
            for n in range(1, count, 2):
                cache.put(key(n), {"n": n})
        finally:
            os._exit(0)
    for n in range(2, count, 2):
        cache.put(key(n), {"n": n})
    _, status = os.waitpid(pid, 0)
    assert status == 0
    fresh = DiskCache(tmp_path)
    missing = [n for n in range(count) if fresh.get(key(n)) != {"n": n}]
    assert missing == []
    assert fresh.stats()["entries"] == count


def test_a_writer_killed_at_random_moments_loses_no_completed_write(tmp_path):
    rng = random.Random(1234)
    completed: list[int] = []
    next_key = 0
    for _ in range(30):
        proc = spawn("kill-target", tmp_path, next_key)
        # Let it write for a random time: sometimes before its first put, mostly mid-stream.
        time.sleep(rng.uniform(0.03, 0.2))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        done = [int(line) for line in out.split()]
        completed += done
        next_key = (done[-1] + 1) if done else next_key
        # The store opens after every kill, and every completed write is there with its value.
        cache = DiskCache(tmp_path)
        assert all(cache.get(key(n)) == record(n) for n in done)
    assert len(completed) > 300, "the writer should have completed many writes across the runs"
    cache = DiskCache(tmp_path)
    assert all(cache.get(key(n)) == record(n) for n in completed)
    report = cache.verify()
    assert report["bad"] == 0, report
    assert report["entries"] >= len(set(completed))


def test_a_writer_killed_while_evicting_leaves_a_store_that_opens_with_right_values(tmp_path):
    # A 1 MB limit makes the writer evict (rewrite every index shard, delete segments) every few dozen puts.
    rng = random.Random(99)
    next_key = 0
    for run in range(10):
        proc = spawn("kill-target", tmp_path, next_key, env={"WORKER_LIMIT": str(1024**2)})
        time.sleep(rng.uniform(0.05, 0.3))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        done = [int(line) for line in out.split()]
        next_key = (done[-1] + 1) if done else next_key
        cache = DiskCache(tmp_path, 1024**2)
        # The newest completed writes survive eviction; anything found is the right value.
        assert all(cache.get(key(n)) == record(n) for n in done[-5:])
        found = [n for n in range(next_key) if cache.get(key(n)) is not None]
        assert all(cache.get(key(n)) == record(n) for n in found)
        # A kill may leave the store over its limit (mid-eviction); the next put brings it under.
        cache.put(key(10**9 + run), record(1))
        assert cache.stats()["bytes"] <= 1024**2
    assert DiskCache(tmp_path, 1024**2).verify()["bad"] == 0


@pytest.mark.parametrize("action", ["clear", "evict"])
def test_readers_during_clear_or_eviction_see_right_values_or_misses(tmp_path, action):
    size = 4000
    cache = DiskCache(tmp_path, 8 * 1024**2)
    for n in range(400):
        cache.put(key(n), record(n, size))
    readers = [spawn("reader", tmp_path, first, 200, size) for first in (0, 200)]
    for p in readers:  # both are reading (and have hit) before anything is removed
        assert p.stdout.readline().strip() == "reading"
    if action == "clear":
        for _ in range(5):
            cache.clear()
            for n in range(400):
                cache.put(key(n), record(n, size))
    else:
        # Writing far past the size limit evicts the oldest segments, the ones the readers read.
        for n in range(400, 4000):
            cache.put(key(n), record(n, size))
        assert cache.stats()["bytes"] <= 8 * 1024**2
        assert cache.get(key(0)) is None
    (tmp_path / "stop-reading").touch()
    for p in readers:
        out, err = p.communicate(timeout=60)
        # A SIGBUS would show as returncode -7; a wrong value as exit code 3.
        assert p.returncode == 0, f"reader died ({p.returncode}): {out}{err}"
        hits, _ = map(int, out.split())
        assert hits > 0


def test_a_read_only_directory_warns_once_and_runs_memory_only():
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    # Not under tmp_path: its parent is private to the user running pytest.
    outer = Path(tempfile.mkdtemp(prefix="turbodspy-ro-"))
    outer.chmod(0o755)
    directory = outer / "ro"
    directory.mkdir()
    directory.chmod(0o555)
    # Root ignores permissions, so there the worker drops to an unprivileged user once it has started.
    env = {"WORKER_UID": "65534"} if os.geteuid() == 0 else {}
    proc = spawn("put-and-get", directory / "cache", 5, env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    counts, *messages = out.splitlines()
    assert counts == "1 0"  # one warning; nothing could be stored
    assert "cannot be used" in messages[0] and "memory cache only" in messages[0]
    assert str(directory / "cache") in messages[0]
    directory.chmod(0o755)
    shutil.rmtree(outer)


def test_a_full_disk_warns_once_keeps_what_fit_and_carries_on(tmp_path):
    # A file-size limit makes writes fail with EFBIG the way a full disk fails them with ENOSPC.
    def limit_file_size():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024**2, 1024**2))

    proc = spawn("put-and-get", tmp_path, 100, preexec_fn=limit_file_size)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    counts, *messages = out.splitlines()
    warnings_seen, found = counts.split()
    assert int(warnings_seen) == 1
    assert 0 < int(found) < 100
    assert "File too large" in messages[0]
    # What was written before the failure is intact for the next process.
    cache = DiskCache(tmp_path)
    assert sum(cache.get(key(n)) == record(n, 20_000) for n in range(100)) == int(found)
    assert cache.verify()["bad"] == 0
