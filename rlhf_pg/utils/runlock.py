"""One writer per run folder: an exclusive ``fcntl.flock`` on ``<folder>/.lock``.

The OS drops a flock when its holder exits or is killed, so a lock file left
behind by a dead process is stale by construction: the next writer simply
takes it (and overwrites the pid in it). A second live writer gets one line
naming the folder and the pid that holds it. Standard library only; POSIX.

The lock is per open file, so one process cannot take the same folder twice
(the second :class:`RunLock` fails like another process would): take it once,
at the entry point that owns the folder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from .config import ConfigError

LOCK_NAME = ".lock"


class RunLockError(ConfigError):
    """The folder cannot be used as a run folder: busy, a file, or not writable."""


def check_folder(path: str | os.PathLike, what: str = "run folder") -> Path:
    """Create ``path`` (and parents) if needed, or raise one line saying why it cannot be
    a folder this process writes into (it is a file, it is under a file, permissions)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunLockError(f"{what} '{path}' is a file, not a folder")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise RunLockError(f"{what} '{path}' is under '{above}', which is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunLockError(f"{what} '{path}' cannot be created: {err.strerror}") from None
    return path


class RunLock:
    """``with RunLock(folder):`` -- create ``folder`` if needed and hold it exclusively.

    Raises :class:`RunLockError` (one line) if another live process holds it or the
    folder cannot be written. The lock file is removed on release.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "run folder") -> None:
        self.folder, self.what = Path(folder), what
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        check_folder(self.folder, self.what)
        path = self.folder / LOCK_NAME
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise RunLockError(
                    f"{self.what} '{self.folder}' is not writable: {err.strerror}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunLockError(
                    f"{self.what} '{self.folder}' is in use by process {pid} "
                    f"({LOCK_NAME}); wait for it to finish or stop it, or choose another folder"
                ) from None
            # the previous holder unlinks the file as it lets go: if that happened between
            # our open and flock, we hold a file nobody else sees; open the new one instead
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self.fd = fd
                return self
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        # unlink while still holding the lock, so no one can take the file we drop
        (self.folder / LOCK_NAME).unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
