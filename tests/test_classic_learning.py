"""Each algorithm learns something measurable on CartPole in a short budget (fixed seed).

A uniformly random policy scores about 22 on CartPole-v1; the thresholds
below are several times that, evaluated on separate deterministic episodes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from classic_control.settings import resolve
from classic_control.trainer import Trainer


def _train(tmp_path, algo: str, env_id: str, **overrides) -> tuple[dict, list[dict]]:
    cfg, _ = resolve(algo, env_id, {"seed": 0, **overrides})
    trainer = Trainer(cfg, tmp_path / "run")
    try:
        result = trainer.train(show_progress=False)
    finally:
        trainer.close()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    return result, rows


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algo", "steps", "threshold"),
    [("ppo", 20_000, 120.0), ("a2c", 30_000, 100.0), ("reinforce", 30_000, 100.0)],
)
def test_learns_cartpole(tmp_path, algo, steps, threshold):
    result, rows = _train(tmp_path, algo, "CartPole-v1", total_steps=steps, eval_every=0)
    assert result["episodes"] == 10
    assert result["mean_return"] >= threshold, result
    assert rows[-1]["env_steps"] >= steps
    # the training return rose too: last episodes beat the first ones
    train = [r["train/episode_return"] for r in rows if "train/episode_return" in r]
    assert np.mean(train[-5:]) > 2 * np.mean(train[:5])
    keys = ("loss/policy", "loss/value", "loss/entropy", "policy/approx_kl", "grad_norm", "lr")
    for key in (*keys, "throughput/env_steps_per_s"):
        assert all(np.isfinite(r[key]) for r in rows), key


@pytest.mark.slow
def test_continuous_ppo_runs_on_pendulum(tmp_path):
    result, rows = _train(
        tmp_path,
        "ppo",
        "Pendulum-v1",
        total_steps=4096,
        num_envs=4,
        num_steps=256,
        num_minibatches=4,
        update_epochs=2,
        eval_episodes=2,
        eval_every=2048,
    )
    run = tmp_path / "run"
    assert len(rows) == 4 and [r["env_steps"] for r in rows] == [1024, 2048, 3072, 4096]
    assert sum("eval/return_mean" in r for r in rows) == 2
    assert -2000 < result["mean_return"] < 0  # Pendulum rewards are in [-16.3, 0] per step
    assert all(
        np.isfinite(r["policy/clipfrac"]) and np.isfinite(r["value/explained_variance"])
        for r in rows
    )
    for name in (
        "config.yaml",
        "metrics.csv",
        "curve.png",
        "model_final.safetensors",
        "model_best.safetensors",
        "checkpoint.pt",
    ):
        assert (run / name).is_file(), name
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["env_steps"] == 4096 and evaluation["episodes"] == 2
    for key in ("mean_return", "std_return"):
        assert np.isfinite(evaluation[key])
