"""``python -m ttcrouter.collection ARGS``: the same as ``ttcrouter collect ARGS``."""

import sys

from ..cli import main

if __name__ == "__main__":  # pragma: no cover - exercised in a subprocess by the tests
    sys.exit(main(["collect", *sys.argv[1:]]))
