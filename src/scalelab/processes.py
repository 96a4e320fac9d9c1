"""Helpers for the processes scalelab starts (pool workers, data-parallel ranks)."""

from __future__ import annotations

import os
import threading
import time


def exit_when_parent_dies(parent_pid: int, *, poll_s: float = 1.0) -> None:
    """Start a daemon thread that ends this process as soon as ``parent_pid`` is no longer
    its parent (the parent was killed, even with ``kill -9``): nobody would read its work."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(poll_s)

    threading.Thread(target=watch, name="exit-when-parent-dies", daemon=True).start()
