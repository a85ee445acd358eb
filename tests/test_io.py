"""Atomic writes keep the previous file on failure, follow the umask, and replace folders so
that a reader always finds a whole version; loads refuse pickled code."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlhf_pg.utils import io as io_mod
from rlhf_pg.utils.io import (
    atomic_path,
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write_json,
    filter_jsonl,
    load_safetensors,
    recover_replaced_dir,
    remove_stale_temporaries,
    replace_dir,
    resolve_replaced_dir,
    safe_torch_load,
)


def test_failed_write_leaves_previous_file_intact(tmp_path):
    target = tmp_path / "eval.json"
    atomic_write_json(target, {"mean_return": 500.0})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"mean_return": 1')  # torn write ...
        raise RuntimeError("killed mid-save")  # ... then a crash
    assert json.loads(target.read_text()) == {"mean_return": 500.0}
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]  # no temp files left


def test_safetensors_round_trip(tmp_path):
    w = {"a": torch.randn(3, 2), "b": torch.arange(4)}
    atomic_save_safetensors(w, tmp_path / "m.safetensors")
    back = load_safetensors(tmp_path / "m.safetensors")
    assert torch.equal(back["a"], w["a"]) and torch.equal(back["b"], w["b"])


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_safe_torch_load_refuses_arbitrary_objects(tmp_path):
    atomic_torch_save({"step": 3, "t": torch.ones(2)}, tmp_path / "ok.pt")
    assert safe_torch_load(tmp_path / "ok.pt")["step"] == 3
    torch.save({"x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unpickl"):
        safe_torch_load(tmp_path / "evil.pt")


# ---------------------------------------------------------------- permissions
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    from rlhf_pg.utils.io import current_umask

    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        atomic_torch_save({"x": 1}, tmp_path / "b.pt")
        atomic_save_safetensors({"w": torch.ones(1)}, tmp_path / "c.safetensors")
        with open(tmp_path / "reference", "w"):  # what open() makes is the reference
            pass
    finally:
        os.umask(previous)
    want = stat.S_IMODE((tmp_path / "reference").stat().st_mode)
    assert want == 0o666 & ~umask
    for name in ("a.json", "b.pt", "c.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


# ---------------------------------------------------------------- folders
def _version(root: Path, name: str, text: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "state").write_text(text)
    return folder


READER = """
import pathlib, sys
final, stop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
seen, misses = set(), 0
print("ready", flush=True)
while not stop.exists():
    try:
        seen.add((final / "state").read_text())
    except FileNotFoundError:
        misses += 1
print(len(seen), misses)
"""


def test_replace_dir_never_leaves_the_name_missing_for_a_reader(tmp_path):
    """Another process reads the folder in a tight loop while it is replaced 300 times."""
    a, b = _version(tmp_path, "a", "a"), _version(tmp_path, "b", "b")
    if not io_mod._exchange(a, b):
        pytest.skip("this file system cannot exchange two names atomically")
    final = _version(tmp_path, "ckpt", "0")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(final), str(tmp_path / "stop")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout.readline().strip() == "ready"
    try:
        for i in range(1, 300):
            replace_dir(_version(tmp_path, ".ckpt.partial", str(i)), final)
    finally:
        (tmp_path / "stop").touch()
        seen, misses = map(int, reader.communicate(timeout=60)[0].split())
    assert (final / "state").read_text() == "299"
    assert seen > 1  # the reader did overlap the replacements
    assert misses == 0  # two renames in a row leave a window here (a few misses per 300)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "ckpt", "stop"]


def test_a_kill_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    """Without an atomic exchange the folder is moved aside first; a kill right after leaves
    only ``.ckpt.old`` and the complete ``.ckpt.partial``: readers get the new version, and
    the next writer finishes the move."""
    monkeypatch.setattr(io_mod, "_exchange", lambda a, b: False)
    final = _version(tmp_path, "ckpt", "old")
    new = _version(tmp_path, ".ckpt.partial", "new")
    real_rename = os.rename

    def killed_after_first_rename(src, dst):
        real_rename(src, dst)
        if Path(dst).name == ".ckpt.old":
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(io_mod.os, "rename", killed_after_first_rename)
    with pytest.raises(KeyboardInterrupt):
        replace_dir(new, final)
    monkeypatch.setattr(io_mod.os, "rename", real_rename)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckpt.old", ".ckpt.partial"]
    assert (resolve_replaced_dir(final) / "state").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckpt.old", ".ckpt.partial"]
    recover_replaced_dir(final)
    assert (final / "state").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_kill_before_the_new_version_is_complete_keeps_the_old_one(tmp_path):
    final = _version(tmp_path, "ckpt", "old")
    _version(tmp_path, ".ckpt.partial", "torn")  # killed while writing the new version
    assert resolve_replaced_dir(final) == final
    recover_replaced_dir(final)
    assert (final / "state").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    # moved aside and killed before the new version took its place: the old one comes back
    final.rename(tmp_path / ".ckpt.old")
    recover_replaced_dir(final)
    assert (final / "state").read_text() == "old"


def test_temporaries_of_killed_writes_are_removed(tmp_path):
    (tmp_path / ".eval.json.abc123_z.tmp").write_text("{")  # mkstemp's name, killed write
    _version(tmp_path, "checkpoint-000002", "old")
    (tmp_path / "checkpoint-000002").rename(tmp_path / ".checkpoint-000002.old")
    _version(tmp_path, ".checkpoint-000002.partial", "new")
    _version(tmp_path, ".checkpoint-000004.partial", "torn")
    (tmp_path / "notes.tmp").write_text("a user's file")  # not one of ours
    removed = {p.name for p in remove_stale_temporaries(tmp_path)}
    assert ".eval.json.abc123_z.tmp" in removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000002", "notes.tmp"]
    assert (tmp_path / "checkpoint-000002" / "state").read_text() == "new"


def test_filter_jsonl_keeps_earlier_records_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 2, 3)) + '{"st')
    assert filter_jsonl(path, lambda r: r["step"] <= 2) == 3
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 2]
    before = path.stat().st_mtime_ns
    assert filter_jsonl(path, lambda r: True) == 0 and path.stat().st_mtime_ns == before
