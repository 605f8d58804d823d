"""`python -m turbodspy COMMAND`: `cache ...` manages the disk cache; `demo` runs the seed (work in progress)."""

import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["cache"]:
        from turbodspy.cache_cli import main as cache_main

        return cache_main(argv[1:])
    from turbodspy import __version__

    print(f"turbodspy {__version__}: {' '.join(argv) or 'no command'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
