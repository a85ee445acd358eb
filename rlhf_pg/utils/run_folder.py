"""One writer per run folder, one rule for a new run in a used folder, and launches whose
processes do not form one group. Shared by the LM trainer and the stages (and the
classic-control ``train --out``); standard library only.

- :func:`lock_run_folder` takes an exclusive ``fcntl.flock`` on ``<folder>/.rlhf-pg.lock``.
  The OS drops it when the holder exits or is killed, so a lock left by a dead process is
  never in the way; a second writer gets one line naming the folder and the holder's pid.
  Within one process the claim is shared (a resumed trainer reopening its own folder).
- :func:`prepare_fresh_run` is the rule for a new run: outputs of an earlier run in the
  folder make it refuse, unless the caller asked to overwrite them.
- :func:`check_process_group` stops N processes started by one launcher that each see a
  group of one (they would train N identical copies into one folder).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from .config import ConfigError

LOCK_NAME = ".rlhf-pg.lock"


class OutputDirError(ConfigError):
    """An output folder that cannot be written, holds an earlier run, or is in use."""


class RunFolderBusy(OutputDirError):
    """Another process writes into the folder."""


class ProcessGroupError(ConfigError):
    """Processes started together that do not form one process group."""


def ensure_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` (and parents) if needed; one line naming it if that is impossible."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"{what} '{path}' is a file, not a folder")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise OutputDirError(f"{what} '{path}' is under '{above}', which is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputDirError(f"{what} '{path}' cannot be created: {err.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputDirError(f"{what} '{path}' is not writable")
    return path


# folder -> [pid, fd, holders]; the pid tells a forked child that the claim is its parent's
_HELD: dict[Path, list[int]] = {}
_GUARD = threading.Lock()


class RunFolderLock:
    """A claim on a run folder. :meth:`release`, garbage collection or the end of the
    process frees it; the lock file is removed when the last claim of the process goes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._finalizer = weakref.finalize(self, _release, folder, os.getpid())

    @property
    def held(self) -> bool:
        return self._finalizer.alive

    def release(self) -> None:
        self._finalizer()


def lock_run_folder(folder: str | os.PathLike, what: str = "run folder") -> RunFolderLock:
    """Create ``folder`` if needed and claim it for this process, or raise
    :class:`RunFolderBusy` naming the folder and the process holding it."""
    path = ensure_writable_dir(folder, what)
    key = path.resolve()
    with _GUARD:
        entry = _HELD.get(key)
        if entry is not None and entry[0] == os.getpid():
            entry[2] += 1
        else:
            _HELD[key] = [os.getpid(), _acquire(key, path, what), 1]
    return RunFolderLock(key)


def _acquire(key: Path, shown: Path, what: str) -> int:
    lock = key / LOCK_NAME
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            who = f"process {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise RunFolderBusy(
                f"{what} '{shown}' is in use by {who} ({lock.name}); wait for it to finish "
                f"or stop it, or choose another folder"
            ) from None
        # the previous holder removes the file when it lets go: if it did so between our
        # open and flock, we hold a lock on a file nobody else will see; take the new one
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            return fd
        os.close(fd)


def _release(key: Path, pid: int) -> None:
    with _GUARD:
        entry = _HELD.get(key)
        if entry is None or entry[0] != pid or os.getpid() != pid:
            return  # a forked child must not free its parent's claim
        entry[2] -= 1
        if entry[2] == 0:
            del _HELD[key]
            (key / LOCK_NAME).unlink(missing_ok=True)  # still locked: no one takes the old file
            os.close(entry[1])


def prepare_fresh_run(
    folder: str | os.PathLike,
    markers: Sequence[str],
    *,
    overwrite: bool,
    also_remove: Sequence[str] = (),
    what: str = "output folder",
    hint: str = "",
) -> list[Path]:
    """The rule for a new (not resumed) run writing into ``folder``: if any file or folder
    matching the glob patterns ``markers`` is there (outputs of an earlier run), delete
    them and those matching ``also_remove`` when ``overwrite``, otherwise raise
    :class:`OutputDirError` (one line; ``hint`` says how to resume). Returns what was
    deleted."""
    folder = Path(folder)
    found = sorted({p for m in markers for p in folder.glob(m)})
    if not found:
        return []
    if not overwrite:
        names = ", ".join(p.name for p in found[:3]) + (" ..." if len(found) > 3 else "")
        raise OutputDirError(
            f"{what} '{folder}' already holds a run ({names}); {hint}"
            f"{'or ' if hint else ''}choose a new folder"
        )
    doomed = sorted(set(found) | {p for m in also_remove for p in folder.glob(m)})
    for p in doomed:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return doomed


def check_process_group(
    num_processes: int,
    *,
    cpu_flag: str = "--cpu true",
    env: Mapping[str, str] | None = None,
    has_gpu: bool | None = None,
) -> None:
    """Raise :class:`ProcessGroupError` when the launcher started more processes
    (``WORLD_SIZE``) than the process group this process sees (``num_processes``, e.g.
    ``accelerator.num_processes``): ``accelerate launch`` with a multi-GPU config on a
    machine without GPUs runs each process alone. ``cpu_flag`` is the script's flag that
    puts the processes in one CPU group (``--use_cpu true`` for transformers' Trainer)."""
    env = os.environ if env is None else env
    try:
        launched = int(env.get("WORLD_SIZE", "1"))
    except ValueError:
        return  # not set by a launcher we know
    if launched <= num_processes:
        return
    if has_gpu is None:
        import torch  # only here: the module itself stays free of torch

        has_gpu = torch.cuda.is_available()
    fix = (
        f"add {cpu_flag} to the script's arguments (this machine has no GPU)"
        if not has_gpu
        else f"give the launcher at most as many processes as GPUs, or add {cpu_flag}"
    )
    raise ProcessGroupError(
        f"the launcher started {launched} processes (WORLD_SIZE={launched}) but this one sees "
        f"a group of {num_processes}: they would run {launched} identical jobs into one "
        f"folder; {fix}"
    )
