"""``python -m scalelab`` runs the command line."""

import sys

from scalelab.cli import EXIT_INTERRUPTED, main

if __name__ == "__main__":  # guarded: worker processes re-import this module when spawned
    try:
        status = main()
    except KeyboardInterrupt:  # an interrupt before the command could report it: exit 130 all the same
        print("scalelab: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    raise SystemExit(status)
