"""Executors run cells; the coordinator in :mod:`scalelab.execute.runner` drives them."""
