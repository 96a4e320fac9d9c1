"""``python -m scalelab`` runs the command line."""

from scalelab.cli import console_main

if __name__ == "__main__":  # guarded: worker processes re-import this module when spawned
    console_main()
