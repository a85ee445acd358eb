"""The arithmetic recipes (exact-match reward callable, no reward model) run PPO, RLOO and
GRPO from the same script, and report greedy and sampled held-out accuracy; the recipe's
runs checkpoint (``--save_every``) and resume like any PPOTrainer.train run."""

import json
import runpy
from pathlib import Path

import pytest
import torch

from rlhf_pg.stages.sft import SFTArgs, train_sft
from rlhf_pg.tasks.arithmetic import arithmetic_prompts

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.fixture(scope="module")
def tiny_arithmetic_sft(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = SFTArgs(
        task="arithmetic", max_operand=9, corpus_size=500, vocab_size=300, n_layer=1, n_head=2,
        n_embd=32, n_positions=32, max_length=16, max_steps=30, warmup_steps=5, batch_size=32,
        progress=False, output_dir=str(tmp_path_factory.mktemp("sft_arith") / "m"),
    )  # fmt: skip
    return train_sft(cfg)


def _run(sft, out, *extra: str, config: str = "ppo_arithmetic.yaml") -> dict:
    main = runpy.run_path(str(RECIPES / "ppo.py"))["main"]
    assert main([
        "--config", str(RECIPES / "configs" / config),
        "--model_name_or_path", str(sft), "--max_operand", "9",
        "--max_steps", "2", "--batch_size", "4", "--num_eval_prompts", "6",
        "--eval_every", "1", "--progress_bar", "false", "--save_policy", "false",
        "--output_dir", str(out), *extra,
    ]) == 0  # fmt: skip
    return json.loads((out / "ppo_results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["ppo", "rloo", "grpo"])
def test_arithmetic_recipe_runs_each_estimator(tiny_arithmetic_sft, tmp_path, estimator):
    results = _run(tiny_arithmetic_sft, tmp_path, config=f"{estimator}_arithmetic.yaml")
    history, evals = results["history"], results["evals"]
    assert [h["step"] for h in history] == [1, 2] and [e["step"] for e in evals] == [0, 1, 2]
    # the exact-match callable is the whole reward; a critic exists only for ppo
    for h in history:
        assert h["score/mean"] == pytest.approx(h["reward/exact_match_reward"])
        assert ("value/explained_variance" in h) == (estimator == "ppo")
    held_out = set(arithmetic_prompts("held_out", max_operand=9)[:6])
    for e in evals:
        assert 0.0 <= e["accuracy"] <= 1.0 and 0.0 <= e["accuracy_sampled"] <= 1.0
        assert {s["prompt"] for s in e["samples"]} <= held_out
        # the sampled pass is the training reward: proxy is the sampled accuracy
        assert e["proxy"] == pytest.approx(e["accuracy_sampled"])


@pytest.mark.slow
def test_recipe_save_every_writes_checkpoints_and_resumes(tiny_arithmetic_sft, tmp_path):
    first = _run(tiny_arithmetic_sft, tmp_path / "a", "--save_every", "1")
    assert sorted(p.name for p in (tmp_path / "a").glob("checkpoint-*")) == [
        "checkpoint-000001",
        "checkpoint-000002",
    ]
    logged = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == [1, 2]
    # continue from step 1: step 2 is the uninterrupted run's step 2
    resume = str(tmp_path / "a" / "checkpoint-000001")
    second = _run(tiny_arithmetic_sft, tmp_path / "b", "--resume_from_checkpoint", resume)
    assert [h["step"] for h in second["history"]] == [2]
    assert [e["step"] for e in second["evals"]] == [1, 2]
    for key in ("score/mean", "kl/seq", "loss/policy"):
        assert second["history"][0][key] == pytest.approx(first["history"][1][key]), key
    assert second["evals"][-1]["accuracy"] == first["evals"][-1]["accuracy"]
    # resumed in its own folder, a run keeps one completions table per evaluated step
    table = (tmp_path / "a" / "completions.jsonl").read_text().splitlines()
    _run(tiny_arithmetic_sft, tmp_path / "a", "--resume_from_checkpoint", resume)
    again = (tmp_path / "a" / "completions.jsonl").read_text().splitlines()
    n = 6 * json.loads((tmp_path / "a" / "ppo_results.json").read_text())["args"]["eval_samples"]
    assert [json.loads(line)["step"] for line in again] == [0] * n + [1] * n + [2] * n
    assert again == table  # the evaluations are seeded: the same rows again
