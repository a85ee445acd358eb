"""Atomic writes keep the previous file on failure; loads refuse pickled code."""

import json

import pytest
import torch

from rlhf_pg.utils.io import (
    atomic_path,
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write_json,
    load_safetensors,
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
