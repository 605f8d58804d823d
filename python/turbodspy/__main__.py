"""`python -m turbodspy demo [...]` runs the seed's calls; `python -m turbodspy cache ...` manages the disk cache."""

import sys

USAGE = "usage: python -m turbodspy {demo,cache} [options]   (add --help after a command for its options)"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        from turbodspy.demo import main as demo

        return demo(rest)
    if command == "cache":
        from turbodspy.cache_cli import main as cache

        return cache(rest)
    print(f"unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
