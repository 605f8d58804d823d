"""Worker processes for the disk cache tests: run as `python tests/_disk_worker.py MODE DIR ...`.

Every value is a pure function of its key number, so any process can tell a right value from a wrong one.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
import warnings


def key(n: int) -> str:
    return hashlib.sha256(f"request-{n}".encode()).hexdigest()


def record(n: int, size: int = 0) -> dict:
    size = size or 200 + (n * 7919) % 3000
    text = (f"answer {n} " * (size // 10 + 1))[:size]
    return {
        "response": {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": n % 100, "completion_tokens": 7, "total_tokens": n % 100 + 7},
        },
        "usage": {"prompt_tokens": n % 100, "completion_tokens": 7, "total_tokens": n % 100 + 7},
        "cost": (n % 10) * 1e-6,
        "model": "test-model",
    }


def check(cache, n: int, size: int = 0) -> bool:
    """True if key n is present with its right value; exits the process on a wrong value."""
    got = cache.get(key(n))
    if got is None:
        return False
    if got != record(n, size):
        print(f"WRONG VALUE for key {n}", flush=True)
        os._exit(3)
    return True


def main() -> None:
    import turbodspy._core  # noqa: F401  (loaded before dropping privileges below)
    from turbodspy.clients.disk_cache import DiskCache

    if os.environ.get("WORKER_UID"):
        # Root ignores file permissions; the read-only directory test runs the worker as another user.
        os.setuid(int(os.environ["WORKER_UID"]))
    mode, directory, *rest = sys.argv[1:]
    limit = int(os.environ.get("WORKER_LIMIT", str(30 * 1024**3)))
    cache = DiskCache(directory, limit)
    if mode == "writer":
        # Writes its range (overlapping its neighbours'), reading others' keys as it goes; then waits
        # until every writer is done and checks it sees all of their writes.
        me, writers, count, step = (int(x) for x in rest)
        mine = range(me * step, me * step + count)
        rng = random.Random(me)
        for i, n in enumerate(mine):
            cache.put(key(n), record(n))
            if i % 4 == 0:
                check(cache, rng.randrange(0, writers * step + count))
                if not check(cache, n):
                    print(f"LOST own key {n}", flush=True)
                    os._exit(4)
        open(os.path.join(directory, f"done-{me}"), "w").close()
        while not all(os.path.exists(os.path.join(directory, f"done-{w}")) for w in range(writers)):
            time.sleep(0.01)
        missing = [n for n in range((writers - 1) * step + count) if not check(cache, n)]
        if missing:
            print(f"MISSING {len(missing)} keys, e.g. {missing[:5]}", flush=True)
            os._exit(5)
    elif mode == "kill-target":
        # Writes forever; a line is printed only after put returned, so every printed number is a
        # completed write.
        (start,) = (int(x) for x in rest)
        n = start
        while True:
            cache.put(key(n), record(n))
            print(n, flush=True)
            n += 1
    elif mode == "reader":
        # Reads known keys until told to stop; any value it gets must be the right one.
        first, count, size = (int(x) for x in rest)
        stop = os.path.join(directory, "stop-reading")
        hits = misses = 0
        announced = False
        while not os.path.exists(stop):
            if not announced and hits:
                print("reading", flush=True)
                announced = True
            for n in range(first, first + count):
                if check(cache, n, size):
                    hits += 1
                else:
                    misses += 1
        print(hits, misses, flush=True)
    elif mode == "put-and-get":
        # For the unusable-directory tests: the program's answers must not change.
        count = int(rest[0])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for n in range(count):
                cache.put(key(n), record(n, 20_000))
            found = sum(cache.get(key(n)) == record(n, 20_000) for n in range(count))
        ours = [w for w in caught if w.category.__name__ == "DiskCacheWarning"]
        print(len(ours), found, flush=True)
        for w in ours:
            print(str(w.message), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
