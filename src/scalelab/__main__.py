"""``python -m scalelab`` runs the command line."""

from scalelab.cli import main

if __name__ == "__main__":  # guarded: worker processes re-import this module when spawned
    raise SystemExit(main())
