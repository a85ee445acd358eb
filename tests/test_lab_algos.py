"""What the estimator lab added to the agents: one-step actor-critic, PPO with the adaptive KL
penalty, REINFORCE's whole-episode return, a separate critic learning rate, time limits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from classic_control.algos import REGISTRY
from classic_control.algos.reinforce import episode_weights
from classic_control.config import ConfigError
from classic_control.envs import probe_env
from classic_control.lab.importance import log_ratios
from classic_control.networks import ActorCritic
from classic_control.rollout import Batch, EpisodeCollector, VectorCollector
from classic_control.settings import resolve
from rlhf_pg.core import effective_sample_size, step_ratios, trajectory_log_weights


def _setup(algo: str, **overrides):
    cfg, _ = resolve(algo, "CartPole-v1", overrides)
    torch.manual_seed(0)
    spec = probe_env(cfg.env_id)
    agent = ActorCritic(spec, cfg)
    return cfg, spec, agent, REGISTRY[algo](cfg, agent)


def test_one_step_actor_critic_update_is_td0_with_separate_learning_rates():
    cfg, spec, agent, algo = _setup("actor_critic", learning_rate=0.01, critic_learning_rate=0.05)
    assert [g["lr"] for g in algo.optimizer.param_groups] == pytest.approx([0.01, 0.05])
    algo.set_lr(0.005)  # annealing keeps the ratio
    assert [g["lr"] for g in algo.optimizer.param_groups] == pytest.approx([0.005, 0.025])
    obs = torch.tensor([[[0.01, 0.02, -0.03, 0.04]]])
    nxt = torch.tensor([[0.02, 0.2, -0.03, -0.2]])
    with torch.no_grad():
        v, v_next = agent.value(obs[0]), agent.value(nxt)
    b = Batch(
        obs,
        torch.tensor([[1]]),
        torch.zeros(1, 1),
        v.view(1, 1),
        torch.ones(1, 1),
        torch.zeros(1, 1, dtype=torch.bool),
        torch.zeros(1, 1, dtype=torch.bool),
        v_next.view(1, 1),
        None,
        None,
        1,
    )
    before = {k: p.detach().clone() for k, p in agent.named_parameters()}
    m = algo.update(b, 1.0)
    delta = 1.0 + cfg.gamma * v_next.item() - v.item()  # TD(0) error, computed by hand
    assert m["td_error"] == pytest.approx(delta, rel=1e-5)
    with torch.no_grad():
        v_after = agent.value(obs[0]).item()
    # the critic moved towards the TD target; both networks were updated
    assert abs(v_after - (v.item() + delta)) < abs(delta)
    assert not torch.equal(
        before["policy_head.layers.0.weight"], agent.policy_head.layers[0].weight
    )


def test_actor_critic_rejects_batched_settings():
    with pytest.raises(ConfigError, match="num_envs and num_steps must be 1"):
        resolve("actor_critic", "CartPole-v1", {"num_envs": 4})
    with pytest.raises(ConfigError, match="critic_learning_rate"):
        resolve("a3c", "CartPole-v1", {"critic_learning_rate": 0.01})
    with pytest.raises(ConfigError, match="critic_learning_rate must be > 0"):
        resolve("a2c", "CartPole-v1", {"critic_learning_rate": -1.0})


@pytest.mark.parametrize(("target", "direction"), [(1e-7, 1), (10.0, -1)])
def test_kl_penalty_coefficient_follows_the_controller(target, direction):
    cfg, spec, agent, algo = _setup(
        "ppo_kl", num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2, kl_target=target
    )
    collector = VectorCollector(cfg.env_id, spec, cfg, agent)
    try:
        first = algo.update(collector.collect(), 1.0)
        second = algo.update(collector.collect(), 0.9)
    finally:
        collector.close()
    assert first["kl/coef"] == cfg.kl_coef
    assert (second["kl/coef"] - first["kl/coef"]) * direction > 0
    assert algo.load_state_dict(algo.state_dict()) is None


def test_total_return_mode_puts_the_episode_return_on_every_step():
    returns = torch.tensor([[3.0, 2.0, 1.0], [5.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    assert torch.equal(episode_weights(returns, mask, "reward_to_go"), returns)
    assert torch.equal(
        episode_weights(returns, mask, "total"), torch.tensor([[3.0, 3.0, 3.0], [5.0, 0.0, 0.0]])
    )
    with pytest.raises(ConfigError, match="return_mode"):
        resolve("reinforce", "CartPole-v1", {"return_mode": "whole"})


def test_max_episode_steps_cuts_episodes_and_self_importance_weights_are_one():
    cfg, spec, agent, _ = _setup("reinforce", episodes_per_batch=4, max_episode_steps=7)
    collector = EpisodeCollector(cfg.env_id, spec, cfg, agent)
    try:
        b = collector.collect()
    finally:
        collector.close()
    assert int(b.mask.sum(1).max()) <= 7
    log_rho = log_ratios(agent, agent, b)
    assert bool((log_rho == 0).all())
    assert bool((step_ratios(log_rho, torch.zeros_like(log_rho), b.mask) == 1).all())
    lw = trajectory_log_weights(log_rho, torch.zeros_like(log_rho), b.mask)
    assert effective_sample_size(lw).item() == pytest.approx(4.0, abs=1e-6)


def test_max_episode_steps_validation():
    with pytest.raises(ConfigError, match="max_episode_steps must be >= 1"):
        resolve("ppo", "CartPole-v1", {"max_episode_steps": 0})
    cfg, _ = resolve("ppo", "CartPole-v1", {"max_episode_steps": 30})
    assert dataclasses.asdict(cfg)["max_episode_steps"] == 30


def test_reinforce_total_mode_weights_every_step_by_the_episode_return():
    """Same batch, same start weights: the two modes step the policy differently, and the
    total mode's gradient is the one of the G_0-weighted pseudo-loss computed by hand."""
    cfg, spec, agent, _ = _setup(
        "reinforce", episodes_per_batch=3, norm_returns=False, use_baseline=False, max_grad_norm=0.0
    )
    collector = EpisodeCollector(cfg.env_id, spec, cfg, agent)
    try:
        b = collector.collect()
    finally:
        collector.close()
    k, t = b.mask.shape
    g0 = torch.stack(
        [(b.rewards[i] * cfg.gamma ** torch.arange(t))[b.mask[i]].sum() for i in range(k)]
    )
    logp = agent.evaluate(b.obs.reshape(k * t, -1), b.actions.reshape(-1))[0].view(k, t)
    hand = -(torch.where(b.mask, logp, 0.0) * g0[:, None]).sum() / b.mask.sum()
    grads = torch.autograd.grad(hand, agent.policy_head.layers[0].weight)[0]
    start = {n: p.detach().clone() for n, p in agent.state_dict().items()}
    moved = {}
    for mode in ("total", "reward_to_go"):
        agent.load_state_dict(start)
        algo = REGISTRY["reinforce"](
            dataclasses.replace(cfg, return_mode=mode, learning_rate=1e-3), agent
        )
        algo.update(b, 1.0)
        moved[mode] = (
            agent.policy_head.layers[0].weight.detach() - start["policy_head.layers.0.weight"]
        )
    assert not torch.allclose(moved["total"], moved["reward_to_go"])
    # Adam's first step moves each weight by -lr * sign(gradient)
    nonzero = grads.abs() > 1e-6
    assert torch.equal(torch.sign(moved["total"])[nonzero], -torch.sign(grads)[nonzero])
