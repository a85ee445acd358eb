"""A content-addressed cache of trained artefacts (SFT model, reward model).

An artefact lives in ``<cache_root>/<kind>-<hash of its config>``. It is written into a
temporary folder beside that path and renamed into place only once complete, so a
killed run never leaves a half-written model that a later run would reuse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DONE_MARKER = ".complete"


def default_cache_root() -> Path:
    """``$RLHF_PG_CACHE`` if set, else ``~/.cache/rlhf-pg``."""
    return Path(os.environ.get("RLHF_PG_CACHE", Path.home() / ".cache" / "rlhf-pg"))


def config_hash(cfg: Any, exclude: tuple[str, ...] = (), extra: str = "") -> str:
    """Short stable hash of a config dataclass's fields, minus those that do not change results."""
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in exclude}
    blob = json.dumps(values, sort_keys=True, default=str) + extra
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_digest(*paths: str | os.PathLike) -> str:
    """Hash of the bytes of some files (used to key a stage on the model it starts from)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def is_complete(path: str | os.PathLike) -> bool:
    return (Path(path) / DONE_MARKER).is_file()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` (marked complete), else is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the artefact is meant to be shared
    try:
        yield tmp
        (tmp / DONE_MARKER).write_text("ok\n")
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
