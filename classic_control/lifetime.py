"""Process lifetime: helper processes die with their parent; SIGTERM stops a run cleanly.

A3C workers and the compare sweep's worker processes are started by one parent.
If that parent is killed (kill -9 leaves it no chance to clean up) they must
not keep training and writing into its folders: each child asks the kernel for
SIGKILL when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``) and, on every
platform, a watchdog thread exits the process once its parent pid changes.

SIGTERM (what ``kill``, systemd, Slurm and container runtimes send) asks the
run to stop at the end of the current update, save a checkpoint and exit, so
that ``--resume`` continues it; a second SIGTERM stops at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

_PR_SET_PDEATHSIG = 1
_WATCH_S = 0.5  # how often the watchdog looks at the parent pid


def exit_with_parent(parent_pid: int) -> None:
    """Make this (child) process exit as soon as process ``parent_pid`` is gone."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_WATCH_S)
        os._exit(1)  # no cleanup: the parent that would use the results is gone

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def ignore_stop_signals() -> None:
    """For workers that their parent stops: Ctrl-C or a SIGTERM to the process group must
    not kill a worker under the parent, which then could not pause them for a checkpoint."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def stop_on_sigterm(request_stop: Callable[[], None]) -> Iterator[None]:
    """While inside, the first SIGTERM calls ``request_stop`` (the run checkpoints and
    returns); a second one raises ``KeyboardInterrupt`` to stop at once. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = 0

    def handler(signum: int, frame: object) -> None:
        nonlocal count
        count += 1
        if count > 1:
            raise KeyboardInterrupt
        request_stop()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
