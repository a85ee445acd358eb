"""TRPO: conjugate gradient, step scaling, a line search that enforces the KL bound, one update."""

from __future__ import annotations

import json

import pytest
import torch

from classic_control.algos.trpo import conjugate_gradient, full_step, line_search
from classic_control.config import ConfigError
from classic_control.settings import resolve
from classic_control.trainer import Trainer


def _spd(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a @ a.T + n * torch.eye(n, dtype=torch.float64)


def test_conjugate_gradient_solves_spd_system():
    a = _spd(6)
    b = torch.arange(1.0, 7.0, dtype=torch.float64)
    x, residual = conjugate_gradient(lambda v: a @ v, b, iters=6)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))
    assert residual < 1e-10


def test_full_step_meets_the_quadratic_kl_model():
    f = _spd(4, seed=1)
    d = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    s = full_step(d, f @ d, max_kl=0.01)
    assert float(0.5 * s @ f @ s) == pytest.approx(0.01)
    assert float(torch.dot(s, d)) > 0  # same direction


def test_line_search_rejects_kl_violating_steps():
    # surrogate improves along the whole step, but KL grows as x^2: the full step and the
    # first backtracks break the bound of 0.25 and must be rejected one by one
    seen = []

    def evaluate(p):
        seen.append(float(p[0]))
        return float(p[0]), float(p[0] ** 2)

    res = line_search(evaluate, torch.zeros(1), torch.ones(1), max_kl=0.25, backtrack_coef=0.8)
    assert res.accepted
    assert res.step_frac == pytest.approx(0.8**4)  # 1, .8, .64, .512 violate; .4096 fits
    assert res.kl <= 0.25 and res.tries == 5
    assert all(x**2 > 0.25 for x in seen[1:-1])  # every rejected candidate broke the bound
    torch.testing.assert_close(res.params, torch.full((1,), 0.8**4))


def test_line_search_keeps_old_params_when_no_candidate_qualifies():
    theta = torch.tensor([2.0])
    # KL always too large
    res = line_search(
        lambda p: (float(p[0]), 1.0), theta, torch.ones(1), max_kl=0.01, max_backtracks=3
    )
    assert not res.accepted and res.step_frac == 0.0 and res.params is theta
    # KL fine, but the surrogate gets worse along the step
    res = line_search(lambda p: (-float(p[0]), 0.0), theta, torch.ones(1), max_kl=0.01)
    assert not res.accepted and res.params is theta


def test_trpo_updates_stay_inside_the_trust_region(tmp_path):
    cfg, _ = resolve(
        "trpo",
        "CartPole-v1",
        {"total_steps": 3 * 8 * 64, "num_steps": 64, "eval_every": 0, "eval_episodes": 2},
    )
    trainer = Trainer(cfg, tmp_path / "run")
    before = [p.detach().clone() for p in trainer.algo.policy_params]
    try:
        trainer.train(show_progress=False)
    finally:
        trainer.close()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert len(rows) == 3
    assert all(r["policy/kl"] <= cfg.max_kl for r in rows)
    assert any(r["trpo/step_accepted"] == 1.0 for r in rows)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.algo.policy_params))


def test_trpo_rejects_a_shared_network():
    with pytest.raises(ConfigError, match="separate value function"):
        resolve("trpo", "CartPole-v1", {"shared_network": True})
    with pytest.raises(ConfigError, match="backtrack_coef"):
        resolve("trpo", "CartPole-v1", {"backtrack_coef": 1.5})
