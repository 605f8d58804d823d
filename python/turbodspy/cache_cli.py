"""`python -m turbodspy cache ...`: inspect, check, empty, export and import the disk cache."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from turbodspy.clients.cache_transfer import CacheFileError, export_cache, import_cache, import_dspy_cache
from turbodspy.clients.disk_cache import DiskCache, default_cache_dir, default_size_limit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m turbodspy cache",
        description="Manage turbodspy's disk cache of LM responses.",
    )
    parser.add_argument(
        "--dir",
        help=f"cache directory (default: $TURBODSPY_CACHEDIR or {default_cache_dir()})",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("stats", help="entries, bytes, hits, misses, tokens and cost saved")
    sub.add_parser("verify", help="check every record; quarantine and drop damaged ones (exit 1 if any)")
    sub.add_parser("clear", help="remove every entry")
    export = sub.add_parser("export", help="write every entry to a portable JSON Lines file (.gz to compress)")
    export.add_argument("file")
    imp = sub.add_parser("import", help="read entries from a file written by `export`")
    imp.add_argument("file")
    dspy = sub.add_parser("import-dspy", help="copy the entries of a DSPy 3.4.1 disk cache directory")
    dspy.add_argument("directory", help="DSPy's cache directory (DSPY_CACHEDIR, by default ~/.dspy_cache)")
    return parser


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    width = max(len(k) for k in result)
    for name, value in result.items():
        if name in ("bytes", "size_limit_bytes") and isinstance(value, int):
            value = f"{value} ({_human_bytes(value)})"
        elif name == "cost_saved":
            value = f"${value:.4f}"
        print(f"{name.ljust(width)}  {value}")


def main(argv: list[str] | None = None) -> int:
    """Runs one `cache` subcommand; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        limit = default_size_limit()
        cache = DiskCache(args.dir if args.dir is not None else default_cache_dir(), limit)
        if args.command == "stats":
            _print(cache.stats(), args.json)
        elif args.command == "verify":
            report = cache.verify()
            _print(report, args.json)
            return 1 if report["bad"] else 0
        elif args.command == "clear":
            cache.clear()
            print(f"cleared {cache.directory}")
        elif args.command == "export":
            print(export_cache(cache, args.file).summary("exported", f"to {args.file}"))
        elif args.command == "import":
            print(import_cache(cache, args.file).summary("imported", f"from {args.file}"))
        elif args.command == "import-dspy":
            print(import_dspy_cache(cache, args.directory).summary("imported", f"from {args.directory}"))
        cache.close()
    except (OSError, CacheFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
