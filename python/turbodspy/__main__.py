"""`python -m turbodspy demo`: the seed's calls against a local server (work in progress)."""

import sys

from turbodspy import __version__

if __name__ == "__main__":
    print(f"turbodspy {__version__}: {' '.join(sys.argv[1:]) or 'no command'}")
