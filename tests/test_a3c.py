"""A3C: the workers share one model and one Adam, and both of them update it."""

from __future__ import annotations

import pytest
import torch

from classic_control.algos.a3c import make_shared_adam, worker_seeds
from classic_control.config import ConfigError
from classic_control.settings import resolve
from classic_control.trainer import Trainer


def test_worker_seeds_are_distinct_and_reproducible():
    assert worker_seeds(0, 0, 3) == worker_seeds(0, 0, 3)
    assert len(set(worker_seeds(0, 0, 3))) == 3
    assert worker_seeds(0, 0, 2) != worker_seeds(1, 0, 2)  # run seed matters
    assert worker_seeds(0, 0, 2) != worker_seeds(0, 1, 2)  # a restart draws new seeds


def test_shared_adam_state_lives_in_shared_memory():
    cfg, _ = resolve("a3c", "CartPole-v1", {})
    params = [torch.nn.Parameter(torch.zeros(3).share_memory_())]
    opt = make_shared_adam(cfg, params)
    state = opt.state[params[0]]
    assert all(t.is_shared() for t in state.values())


@pytest.mark.slow
def test_a3c_workers_update_the_shared_model(tmp_path):
    cfg, _ = resolve(
        "a3c",
        "CartPole-v1",
        {
            "total_steps": 1600,
            "num_workers": 2,
            "num_envs": 2,
            "num_steps": 8,
            "eval_every": 800,
            "eval_episodes": 2,
        },
    )
    trainer = Trainer(cfg, tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.agent.state_dict().items()}
    try:
        result = trainer.train(show_progress=False)
    finally:
        trainer.close()
    assert result is not None and trainer.env_steps >= 1600
    pool = trainer.algo.workers
    per_worker = pool.sh.updates.tolist()
    assert all(n > 0 for n in per_worker), per_worker  # both workers contributed
    # every contribution went through the one shared Adam (steps are taken under a lock)
    steps = {float(s["step"]) for s in trainer.algo.optimizer.state.values()}
    assert steps == {float(sum(per_worker))}
    # ... and each update consumed one rollout of 2 envs x 8 steps
    assert sum(per_worker) * 16 == trainer.env_steps
    after = trainer.agent.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a3c_rejects_normalisation():
    with pytest.raises(ConfigError, match="norm_obs"):
        resolve("a3c", "CartPole-v1", {"norm_obs": True})
    with pytest.raises(ConfigError, match="num_workers"):
        resolve("a3c", "CartPole-v1", {"num_workers": 0})
