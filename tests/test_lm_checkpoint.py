"""save_pretrained / from_pretrained, checkpoint + resume giving an identical continuation,
and resumes that survive kills: metrics cut to the checkpoint, atomic replacement, leftovers
cleaned, and broken or foreign checkpoints refused before anything is restored."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lm_fixtures import PROMPTS, make_policy, make_tokenizer, make_trainer
from transformers import AutoModelForCausalLM

from rlhf_pg.lm import CheckpointError, PolicyWithValueHead, latest_checkpoint
from rlhf_pg.utils import io as io_mod
from rlhf_pg.utils.io import atomic_torch_save, safe_torch_load
from rlhf_pg.utils.run_folder import OutputDirError


def _reward(prompts, completions):
    return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) for c in completions]


SETTINGS = dict(
    batch_size=3,
    max_steps=4,
    learning_rate=3e-3,
    lr_schedule="linear",
    kl_controller="adaptive",
    num_minibatches=3,
)


def _trainer(tokenizer, **kw):
    return make_trainer(
        tokenizer, make_policy(tokenizer), reward=_reward, prompts=PROMPTS, **{**SETTINGS, **kw}
    )


def _state(trainer):
    return {n: p.detach().clone() for n, p in trainer.unwrapped_model.named_parameters()}


@pytest.mark.slow
def test_resume_from_checkpoint_continues_identically(tmp_path):
    tok = make_tokenizer()
    full = _trainer(tok)
    full_history = full.train()

    tok = make_tokenizer()
    first = _trainer(tok)
    first.train(num_steps=2)
    first.save_checkpoint(str(tmp_path / "ckpt"))
    first.train(num_steps=1)  # the saved state must not change afterwards

    tok = make_tokenizer()
    resumed = _trainer(tok)
    resumed.load_checkpoint(str(tmp_path / "ckpt"))
    assert resumed.state.step == 2
    resumed_history = resumed.train()

    for a, b in zip(full_history[2:], resumed_history):
        assert a["score/mean"] == b["score/mean"]
        assert a["kl/coef"] == b["kl/coef"]
        assert a["lr"] == b["lr"]
    final, again = _state(full), _state(resumed)
    for name in final:
        assert torch.equal(final[name], again[name]), name


def test_saved_policy_loads_in_plain_transformers_and_with_its_head(tmp_path):
    tok = make_tokenizer()
    trainer = _trainer(tok)
    trainer.train(num_steps=1)
    trainer.save_pretrained(str(tmp_path / "out"))
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    wrapped = PolicyWithValueHead.from_pretrained(tmp_path / "out")
    ids = torch.tensor([tok("the movie was")["input_ids"]])
    mask, pos = torch.ones_like(ids), torch.arange(ids.shape[1])[None]
    with torch.no_grad():
        want_logits, want_values = trainer.unwrapped_model(ids, mask, pos)
        torch.testing.assert_close(plain(input_ids=ids).logits, want_logits)
        got_logits, got_values = wrapped(ids, mask, pos)
    torch.testing.assert_close(got_values, want_values)
    assert not torch.equal(want_values, torch.zeros_like(want_values))  # the head was trained
    generated = plain.generate(
        ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id
    )
    assert generated.shape[1] > ids.shape[1]


def _steps(out) -> list[int]:
    return [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_resume_cuts_metrics_to_the_checkpoint_and_continues_without_duplicates(tmp_path):
    out = tmp_path / "run"
    tok = make_tokenizer()
    first = _trainer(tok, output_dir=str(out), save_every=2)
    first.train(num_steps=2)  # checkpoint-000002
    # a kill after step 3 was logged but before its checkpoint: the line is on disk
    first.step(first.generate(PROMPTS[:3]))
    first.end_training()
    assert _steps(out) == [1, 2, 3]
    assert latest_checkpoint(out) == out / "checkpoint-000002"

    resumed = _trainer(make_tokenizer(), output_dir=str(out), save_every=2)
    resumed.load_checkpoint(str(latest_checkpoint(out)))
    assert _steps(out) == [1, 2]
    resumed.train()  # to max_steps=4
    assert _steps(out) == [1, 2, 3, 4]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".rlhf")) == [
        "checkpoint-000002",
        "checkpoint-000004",
        "metrics.jsonl",
    ]


def test_a_fresh_run_refuses_a_used_output_dir_and_overwrite_starts_it_clean(tmp_path):
    out = tmp_path / "run"
    tok = make_tokenizer()
    _trainer(tok, output_dir=str(out), max_steps=1).train()
    before = (out / "metrics.jsonl").read_bytes()
    again = _trainer(make_tokenizer(), output_dir=str(out), max_steps=1)
    with pytest.raises(OutputDirError) as err:
        again.train()
    message = str(err.value)
    assert "\n" not in message and f"output_dir '{out}' already holds a run" in message
    assert f"load_checkpoint('{out / 'checkpoint-000001'}')" in message
    assert "overwrite_output_dir=True" in message
    assert again.state.step == 0 and (out / "metrics.jsonl").read_bytes() == before
    with pytest.raises(OutputDirError):  # the step-wise API is held to the same rule
        again.step(again.generate(PROMPTS[:3]), [0.0, 1.0, 0.0])
    assert (out / "metrics.jsonl").read_bytes() == before

    fresh = _trainer(make_tokenizer(), output_dir=str(out), max_steps=2, overwrite_output_dir=True)
    (out / ".checkpoint-000001.partial").mkdir()  # a killed save's leftover goes too
    fresh.train()
    assert _steps(out) == [1, 2]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".rlhf")) == [
        "checkpoint-000002",
        "metrics.jsonl",
    ]


def test_a_kill_between_the_renames_of_a_resave_is_recovered_on_load(tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = _trainer(make_tokenizer(), output_dir=str(out))
    ckpt = out / "checkpoint-000001"
    trainer.train(num_steps=1)  # writes checkpoint-000001
    trainer.train(num_steps=1)
    # re-save step 2 under the same name, without an atomic exchange, killed mid-way
    monkeypatch.setattr(io_mod, "_exchange", lambda a, b: False)
    real_rename = io_mod.os.rename

    def killed_after_first_rename(src, dst):
        real_rename(src, dst)
        if str(dst).endswith(".old"):
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(io_mod.os, "rename", killed_after_first_rename)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(str(ckpt))
    monkeypatch.undo()
    trainer.end_training()
    assert not ckpt.exists()
    assert (out / ".checkpoint-000001.old").is_dir() and (
        out / ".checkpoint-000001.partial"
    ).is_dir()
    (out / ".metrics.jsonl.abcd1234.tmp").write_text("{")  # a killed write's temporary

    resumed = _trainer(make_tokenizer(), output_dir=str(out))
    resumed.load_checkpoint(str(ckpt))
    assert resumed.state.step == 2  # the complete new version was taken
    hidden = sorted(
        p.name for p in out.iterdir() if p.name.startswith(".") and ".rlhf" not in p.name
    )
    assert ckpt.is_dir() and hidden == []


def _snapshot(trainer) -> dict:
    return {
        "params": {n: p.detach().clone() for n, p in trainer.unwrapped_model.named_parameters()},
        "optimizer": repr(trainer.optimizer.state_dict()),
        "scheduler": repr(trainer.scheduler.state_dict()),
        "kl": trainer.kl_coef,
        "state": repr(trainer.state),
        "rng": torch.get_rng_state().clone(),
        "sample": trainer.sample_generator.get_state().clone(),
    }


def _same(a: dict, b: dict) -> bool:
    params = all(torch.equal(a["params"][n], b["params"][n]) for n in a["params"])
    rest = all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
        for k in a
        if k != "params"
    )
    return params and rest


def _drop_entry(key):
    def corrupt(ckpt):
        state = safe_torch_load(ckpt / "trainer_state.pt")
        del state[key]
        atomic_torch_save(state, ckpt / "trainer_state.pt")

    return corrupt


def _truncate(name):
    def corrupt(ckpt):
        data = (ckpt / name).read_bytes()
        (ckpt / name).write_bytes(data[: len(data) // 2])

    return corrupt


def _set_processes(ckpt):
    state = safe_torch_load(ckpt / "trainer_state.pt")
    state["num_processes"] = 2
    atomic_torch_save(state, ckpt / "trainer_state.pt")


BROKEN = [  # (what is done to a good checkpoint, the file named, what is said)
    (lambda c: (c / "rng_state_0.pt").unlink(), "rng_state_0.pt", "is missing"),
    (_drop_entry("scheduler"), "trainer_state.pt", "has no scheduler entry"),
    (_truncate("trainable.safetensors"), "trainable.safetensors", "is unreadable (truncated?)"),
    (_truncate("trainer_state.pt"), "trainer_state.pt", "is unreadable (truncated?)"),
    (_truncate("rng_state_0.pt"), "rng_state_0.pt", "is unreadable (truncated?)"),
    (lambda c: (c / "trainer_config.json").write_text("{"), "trainer_config.json", "unreadable"),
    (_set_processes, "trainer_state.pt", "was written by 2 process(es)"),
]


def test_a_broken_checkpoint_is_named_and_restores_nothing(tmp_path):
    source = _trainer(make_tokenizer())
    source.train(num_steps=2)
    good = tmp_path / "good"
    source.save_checkpoint(str(good))
    # foreign checkpoints: another estimator, another model size
    make_trainer(make_tokenizer(), estimator="rloo", samples_per_prompt=2).save_checkpoint(
        str(tmp_path / "rloo")
    )
    tok = make_tokenizer()
    make_trainer(tok, make_policy(tok, n_embd=48)).save_checkpoint(str(tmp_path / "wide"))
    make_trainer(make_tokenizer(), **{**SETTINGS, "kl_controller": "fixed"}).save_checkpoint(
        str(tmp_path / "fixed_kl")
    )
    cases = [(tmp_path / "rloo", "trainer_config.json", "written with estimator='rloo'")]
    cases.append((tmp_path / "wide", "trainable.safetensors", "(another model size)"))
    cases.append((tmp_path / "fixed_kl", "trainer_state.pt", "kl_controller entry lacks"))
    for i, (corrupt, name, said) in enumerate(BROKEN):
        shutil.copytree(good, tmp_path / f"broken{i}")
        corrupt(tmp_path / f"broken{i}")
        cases.append((tmp_path / f"broken{i}", name, said))

    target = _trainer(make_tokenizer())
    target.train(num_steps=1)  # its own state, which a failed load must leave alone
    before = _snapshot(target)
    for ckpt, name, said in cases:
        with pytest.raises(CheckpointError) as err:
            target.load_checkpoint(str(ckpt))
        message = str(err.value)
        assert str(ckpt / name) in message and said in message, message
        assert "\n" not in message
        assert _same(before, _snapshot(target)), ckpt
    target.load_checkpoint(str(good))  # the intact one still loads
    assert target.state.step == 2


KILLED_RUN = """
import sys
sys.path.insert(0, sys.argv[2])
from lm_fixtures import PROMPTS, make_trainer
trainer = make_trainer(
    reward=lambda p, c: [float(len(x)) for x in c], prompts=PROMPTS, batch_size=2,
    max_steps=100000, save_every=2, output_dir=sys.argv[1],
)
trainer.train()
"""


@pytest.mark.slow
def test_kill_9_during_training_then_resume_gives_each_step_once(tmp_path):
    """A real kill -9 wherever it lands (a step, a log line, a checkpoint write): the latest
    checkpoint resumes and metrics.jsonl ends with every step exactly once."""
    out = tmp_path / "run"
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": str(tests.parent), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(out), str(tests)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            lines = (out / "metrics.jsonl").read_text() if (out / "metrics.jsonl").exists() else ""
            if lines.count("\n") >= 5:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the run ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    ckpt = latest_checkpoint(out)
    assert ckpt is not None
    resumed = make_trainer(
        reward=lambda p, c: [float(len(x)) for x in c],
        batch_size=2,
        max_steps=int(ckpt.name.split("-")[1]) + 2,
        save_every=2,
        output_dir=str(out),
    )
    resumed.load_checkpoint(str(ckpt))
    resumed.train()
    resumed.end_training()
    assert _steps(out) == list(range(1, resumed.config.max_steps + 1))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
