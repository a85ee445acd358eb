"""Crash-safe file writes and safe loads shared by the agents, trainers and benchmarks.

Every file that outlives a run (checkpoints, metrics summaries, eval results)
is written to a temporary file in the same folder, flushed to disk and then
renamed over the target: a kill at any moment leaves either the old file or
the new one, never a torn one. Loads never unpickle arbitrary objects.

Folders (trainer checkpoints) are replaced with :func:`replace_dir`: on Linux one atomic
exchange of the two names, elsewhere two renames whose leftover pair
:func:`recover_replaced_dir` completes. Output files get the permissions the umask allows
(``0o666 & ~umask``), like files written by any other tool.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

# mkstemp's names: ".<target>.<8 random characters>.tmp" (see atomic_path)
_TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; a result file gets what the umask allows, like `cp` or `open`
        os.chmod(tmp_path, 0o666 & ~current_umask())
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_save_safetensors(
    tensors: dict[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
) -> None:
    """Save a flat dict of tensors as safetensors (contiguous CPU copies), atomically."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=metadata)


def load_safetensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    return load_file(str(path), device=str(device))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save for trainer state (tensors, numbers, strings, dicts); read back with
    :func:`safe_torch_load`, which refuses anything that would need unpickling code."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    return torch.load(path, map_location=map_location, weights_only=True)


def append_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Append records as JSON lines in one write: a kill can tear only the last line, which
    :func:`filter_jsonl` (run on resume) drops; earlier lines are never touched."""
    if not records:
        return
    text = "".join(json.dumps(r) + "\n" for r in records)
    with open(path, "a") as f:
        f.write(text)


def filter_jsonl(path: str | os.PathLike, keep: Callable[[dict], bool]) -> int:
    """Atomically rewrite a JSON-lines file with only the records ``keep`` accepts; a torn
    last line (a kill mid-append) is dropped too. Returns the number of records dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and keep(record):
            kept.append(line + "\n")
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(kept))
    return dropped


# ---------------------------------------------------------------------- folders
def partial_dir(final: str | os.PathLike) -> Path:
    """Where a new version of the folder ``final`` is assembled before :func:`replace_dir`."""
    final = Path(final)
    return final.parent / f".{final.name}.partial"


def _old_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.old"


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    OS, the C library or the file system cannot."""
    if sys.platform != "linux":
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # C library older than glibc 2.28
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(src: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move the complete folder ``src`` to ``final``, replacing the folder there.

    A reader of ``final`` finds the old or the new folder at every moment: the names are
    exchanged atomically where the OS allows. Elsewhere ``final`` moves to ``.<name>.old``
    before ``src`` takes its place; a kill between the two renames leaves that pair, which
    :func:`recover_replaced_dir` / :func:`resolve_replaced_dir` complete."""
    src, final = Path(src), Path(final)
    if not final.exists():
        os.rename(src, final)  # onto a missing name: atomic
    elif _exchange(src, final):
        shutil.rmtree(src)  # now holds the old version
    else:
        old = _old_dir(final)
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
        os.rename(src, final)
        shutil.rmtree(old)


def resolve_replaced_dir(final: str | os.PathLike) -> Path:
    """The folder a reader should open for ``final``, changing nothing on disk: ``final``
    itself, or during an interrupted two-rename replacement the new (complete) version,
    else the old one."""
    final = Path(final)
    old, new = _old_dir(final), partial_dir(final)
    if final.exists() or not old.exists():
        return final
    return new if new.is_dir() else old


def recover_replaced_dir(final: str | os.PathLike) -> None:
    """Finish or undo an interrupted :func:`replace_dir` of ``final`` and delete the
    leftovers of killed saves (``.<name>.partial``, ``.<name>.old``). Only the folder's
    writer may call this (it renames and deletes)."""
    final = Path(final)
    old, new = _old_dir(final), partial_dir(final)
    if not final.exists() and old.exists():
        # ``.old`` exists only once the new version was complete: take the new one if it
        # made it, else put the old one back
        os.rename(new if new.is_dir() else old, final)
    for leftover in (old, new):
        if leftover.exists():
            shutil.rmtree(leftover)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of killed atomic writes directly in ``folder``
    (``.<name>.<random>.tmp``) and complete or delete interrupted folder replacements.
    Only the folder's writer may call this (another writer's temporaries would go too)."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if _TMP_NAME.match(name) and entry.is_file():
            entry.unlink()
            removed.append(entry)
        elif name.startswith(".") and name.endswith((".partial", ".old")) and entry.is_dir():
            # (the .partial of a pair is gone with its .old by the time the loop reaches it)
            recover_replaced_dir(folder / name[1:].rsplit(".", 1)[0])
            removed.append(entry)
    return removed
