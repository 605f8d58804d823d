"""The disk tier of the LM cache: a cache directory many processes share, stored by the Rust `DiskStore`.

Records are JSON-native data in a compact tagged binary form (never pickle), every record is checksummed, and a
directory that cannot be used (read-only, full, a network filesystem) turns into one warning and memory-only
operation instead of an error.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_SIZE_LIMIT = 30 * 1024**3
DEFAULT_DIRNAME = ".turbodspy_cache"

# Filesystems where mmap and flock are not reliable across machines.
_NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "9p", "fuse.sshfs", "ceph", "glusterfs"}
)


class DiskCacheWarning(UserWarning):
    """The disk cache cannot be used as configured; turbodspy carries on with the memory cache only."""


def default_cache_dir() -> Path:
    """`TURBODSPY_CACHEDIR` if set, else `~/.turbodspy_cache`."""
    env = os.environ.get("TURBODSPY_CACHEDIR")
    return Path(env).expanduser() if env else Path.home() / DEFAULT_DIRNAME


_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def default_size_limit() -> int:
    """`TURBODSPY_CACHE_LIMIT` if set (bytes, or with a unit: `500MB`, `30GB`), else 30 GB as DSPy."""
    env = os.environ.get("TURBODSPY_CACHE_LIMIT")
    if env is None or not env.strip():
        return DEFAULT_SIZE_LIMIT
    match = re.fullmatch(r"\s*(\d[\d_]*)\s*([KMGT]?)(?:I?B)?\s*", env.upper())
    limit = int(match.group(1).replace("_", "")) * _SIZE_UNITS[match.group(2)] if match else 0
    if limit <= 0:
        raise ValueError(
            f"TURBODSPY_CACHE_LIMIT must be a positive size in bytes, optionally with a unit "
            f"(for example 10737418240, 500MB or 30GB), got {env!r}"
        )
    return limit


def _filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding `path` (Linux: from /proc/self/mounts), or None if unknown.

    Plain string work: this runs on the first cache access of every process, so it is part of a first call.
    """
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            mounts = f.read().splitlines()
        probe = os.path.abspath(path)
        while not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        probe = os.path.realpath(probe)
    except OSError:
        return None
    best, fstype = -1, None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = probe == mount or probe.startswith(mount if mount.endswith("/") else mount + "/")
        if inside and len(mount) > best:
            best, fstype = len(mount), fields[2]
    return fstype


def _tokens_and_cost(record: dict[str, Any]) -> tuple[int, float]:
    usage = record.get("usage")
    tokens = 0
    if isinstance(usage, dict):
        total = usage.get("total_tokens")
        if isinstance(total, int) and not isinstance(total, bool):
            tokens = total
        else:
            parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
            tokens = sum(p for p in parts if isinstance(p, int) and not isinstance(p, bool))
    cost = record.get("cost")
    try:
        cost = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else 0.0
    except OverflowError:  # an int beyond any float: no meaningful price
        cost = 0.0
    return max(tokens, 0), cost


class DiskCache:
    """A cache directory: `get`/`put` of JSON-native record dicts under 64-hex request keys.

    Opening is lazy (nothing touches the disk until the first call). I/O failures never raise from `get`,
    `put` or `__contains__`: the cache warns once and carries on memory-only.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, size_limit_bytes: int | None = None):
        self.directory = Path(os.fspath(directory)).expanduser() if directory is not None else default_cache_dir()
        limit = default_size_limit() if size_limit_bytes is None else size_limit_bytes
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise ValueError(f"size_limit_bytes must be a positive number of bytes, got {size_limit_bytes!r}")
        self.size_limit_bytes = limit
        self._store: Any = None
        self._open_lock = threading.Lock()
        self._unusable: str | None = None  # why the disk is off entirely
        self._read_only: str | None = None  # why writes are off
        self._warned = False

    def _warn(self, reason: str) -> None:
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"turbodspy: the disk cache at {self.directory} cannot be used ({reason}); continuing with the memory "
            "cache only: answers are unchanged, but new responses are not kept for later runs. Point "
            "TURBODSPY_CACHEDIR or configure_cache(disk_cache_dir=...) at a writable local directory to fix this.",
            DiskCacheWarning,
            stacklevel=4,
        )

    def _disable(self, reason: str) -> None:
        self._unusable = reason
        self._warn(reason)

    def _get_store(self) -> Any:
        if self._store is not None or self._unusable is not None:
            return self._store
        with self._open_lock:
            if self._store is None and self._unusable is None:
                fstype = _filesystem_type(self.directory)
                if fstype in _NETWORK_FILESYSTEMS:
                    self._disable(f"it is on a {fstype} network filesystem, where memory-mapped files are unsafe")
                    return None
                from turbodspy._core import DiskStore

                self._store = DiskStore(os.fspath(self.directory), self.size_limit_bytes)
        return self._store

    @staticmethod
    def _reason(error: OSError) -> str:
        return str(error.args[1]) if len(error.args) == 2 else str(error)

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under `key`, or None (a miss, a damaged record, or an unusable directory)."""
        store = self._get_store()
        if store is None:
            return None
        try:
            record = store.get(key)
        except OSError as e:
            self._disable(self._reason(e))
            return None
        return record if isinstance(record, dict) else None

    def get_entry(self, key: str) -> Any:
        """The LM cache entry (`_core.StoredEntry`) for `key`, or None: its record is checked whole and decoded
        only as far as a hit needs."""
        store = self._store or self._get_store()
        if store is None:
            return None
        try:
            return store.get_entry(key)
        except OSError as e:
            self._disable(self._reason(e))
            return None
        except ValueError as e:  # a record that checks out but does not decode: a miss, as with any damage
            logger.warning("turbodspy: skipping an unreadable disk cache record (%s); `cache verify` finds it", e)
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Stores `record` under `key`. I/O problems warn once and turn writes off; they never raise.

        A record that is not a JSON-native dict raises `TypeError`; a malformed key raises `ValueError`.
        """
        if not isinstance(record, dict):
            raise TypeError(f"a cache record must be a dict, got {type(record).__name__}")
        store = self._get_store()
        if store is None or self._read_only is not None:
            return
        tokens, cost = _tokens_and_cost(record)
        try:
            store.put(key, record, tokens, cost)
        except OSError as e:
            self._read_only = self._reason(e)
            self._warn(self._read_only)

    def __contains__(self, key: str) -> bool:
        store = self._get_store()
        if store is None:
            return False
        try:
            return bool(store.contains(key))
        except OSError as e:
            self._disable(self._reason(e))
            return False

    def peek(self, key: str) -> dict[str, Any] | None:
        """Like `get`, without counting a hit or miss (for export and inspection)."""
        store = self._get_store()
        return store.peek(key) if store is not None else None

    def keys(self) -> list[str]:
        """Every key with a readable record."""
        store = self._get_store()
        return list(store.keys()) if store is not None else []

    def stats(self) -> dict[str, Any]:
        """Entries, bytes on disk, hits, misses, tokens and cost saved (shared by every process using the dir)."""
        base: dict[str, Any] = {
            "directory": os.fspath(self.directory),
            "size_limit_bytes": self.size_limit_bytes,
            "enabled": True,
        }
        store = self._get_store()
        if store is not None:
            try:
                return {**store.stats(), **base, "writable": self._read_only is None}
            except OSError as e:
                self._disable(self._reason(e))
        empty = dict.fromkeys(("entries", "bytes", "segments", "hits", "misses", "tokens_saved", "bad_records"), 0)
        return {**empty, "cost_saved": 0.0, **base, "enabled": False, "reason": self._unusable}

    def verify(self) -> dict[str, Any]:
        """Checks every record; damaged ones are copied to `quarantine/` and dropped. Raises OSError if it cannot."""
        store = self._get_store()
        if store is None:
            raise OSError(f"the disk cache at {self.directory} is unusable: {self._unusable}")
        return dict(store.verify())

    def clear(self) -> None:
        """Removes every entry. Processes reading at the same time see old entries or misses, never a crash."""
        store = self._get_store()
        if store is None:
            raise OSError(f"the disk cache at {self.directory} is unusable: {self._unusable}")
        store.clear()

    def close(self) -> None:
        """Unmaps the files; the next call reopens them."""
        with self._open_lock:
            self._store = None
