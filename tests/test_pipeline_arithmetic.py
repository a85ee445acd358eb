"""The arithmetic recipes (exact-match reward callable, no reward model) run PPO, RLOO and
GRPO from the same script, and report greedy and sampled held-out accuracy."""

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
        n_embd=32, n_positions=32, max_length=16, num_steps=30, warmup_steps=5, batch_size=32,
        progress=False, output_dir=str(tmp_path_factory.mktemp("sft_arith") / "m"),
    )  # fmt: skip
    return train_sft(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["ppo", "rloo", "grpo"])
def test_arithmetic_recipe_runs_each_estimator(tiny_arithmetic_sft, tmp_path, estimator):
    main = runpy.run_path(str(RECIPES / "ppo.py"))["main"]
    results = main([
        "--config", str(RECIPES / "configs" / f"{estimator}_arithmetic.yaml"),
        "--model_name_or_path", str(tiny_arithmetic_sft), "--max_operand", "9",
        "--max_steps", "2", "--batch_size", "4", "--num_eval_prompts", "6",
        "--eval_every", "1", "--progress_bar", "false", "--save_policy", "false",
        "--output_dir", str(tmp_path),
    ])  # fmt: skip
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
