"""Rollout bookkeeping: truncation bootstraps from V(final obs), clipped continuous actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from classic_control.algos.a2c import actor_critic_loss
from classic_control.algos.base import gae_advantages
from classic_control.config import Config
from classic_control.envs import probe_env
from classic_control.networks import ActorCritic
from classic_control.rollout import EpisodeCollector, VectorCollector
from rlhf_pg.core import value_loss

gym.register(
    "ShortCartPole-v0",
    entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
    max_episode_steps=5,
)


def _collector(env_id: str, cls=VectorCollector, **kw):
    cfg = Config(env_id=env_id, num_envs=3, num_steps=12, **kw)
    spec = probe_env(env_id)
    torch.manual_seed(0)
    agent = ActorCritic(spec, cfg)
    return cls(env_id, spec, cfg, agent), agent


def test_flat_is_one_row_per_step_env_by_env():
    for env_id, act_shape in (("CartPole-v1", (36,)), ("Pendulum-v1", (36, 1))):
        b = _collector(env_id)[0].collect()
        obs, actions = b.flat()
        assert obs.shape[0] == 36 and actions.shape == act_shape
        assert torch.equal(obs[1 * 12 + 5], b.obs[1, 5])  # env 1, step 5
        assert torch.equal(actions[2 * 12 + 11], b.actions[2, 11])


def test_actor_critic_loss_of_a2c_and_a3c():
    kw = {"entropy_coef": 0.1, "vf_coef": 0.7, "norm_adv": False}
    collector, agent = _collector("CartPole-v1", **kw)
    cfg = Config(num_envs=3, num_steps=12, **kw)
    b = collector.collect()
    adv, ret = gae_advantages(cfg, b, lam=1.0)
    loss = actor_critic_loss(cfg, agent, b, adv, ret)
    assert torch.allclose(loss.total, loss.policy - 0.1 * loss.entropy + 0.7 * loss.value)
    with torch.no_grad():
        v = agent.value(b.obs.reshape(36, -1)).view(3, 12)
        logp = agent.evaluate(*b.flat())[0].view(3, 12)
    assert torch.allclose(loss.value, value_loss(v, ret))
    assert torch.allclose(loss.policy, -(logp * adv).mean())
    loss.total.backward()
    for head in (agent.policy_head, agent.value_head):
        assert head.layers[0].weight.grad.abs().sum() > 0


def test_truncated_steps_bootstrap_from_final_observation():
    collector, agent = _collector("ShortCartPole-v0")
    b = collector.collect()
    # 5-step time limit: every env is cut after steps 4 and 9 (CartPole cannot fall that fast)
    expected = torch.zeros(3, 12, dtype=torch.bool)
    expected[:, [4, 9]] = True
    assert torch.equal(b.truncated, expected)
    assert not b.terminated.any()
    for t in (4, 9):
        # the stored obs after a cut is a fresh reset (|state| < 0.05), not the final obs
        assert b.obs[:, t + 1].abs().max() <= 0.05
        assert not torch.allclose(b.next_values[:, t], b.values[:, t + 1])
    # non-truncated steps bootstrap from the next stored observation
    keep = [t for t in range(11) if t not in (4, 9)]
    assert torch.allclose(b.next_values[:, keep], b.values[:, [t + 1 for t in keep]])
    with torch.no_grad():
        assert torch.allclose(b.next_values[:, -1], agent.value(torch.from_numpy(collector.obs)))


def test_final_obs_value_matches_manual_replay():
    collector, agent = _collector("ShortCartPole-v0")
    env = gym.make("ShortCartPole-v0")
    obs, _ = env.reset(seed=0)  # env 0 of the vector env is reset with seed 0
    b = collector.collect()
    for t in range(5):
        obs, *_ = env.step(int(b.actions[0, t]))
    with torch.no_grad():
        v_final = agent.value(torch.as_tensor(obs)[None])[0]
    assert torch.allclose(b.next_values[0, 4], v_final, atol=1e-6)


def test_continuous_actions_clipped_for_env_raw_sample_stored():
    collector, _ = _collector("Pendulum-v1", init_log_std=1.5)  # std 4.5 >> action bound 2
    b = collector.collect()
    assert b.actions.abs().max() > 2.0  # raw Gaussian samples kept for the log-prob
    recorded = np.asarray(collector.envs.envs[0].actions)
    assert np.abs(recorded).max() <= 2.0  # what the env received was clipped


def test_episode_batches_are_whole_padded_episodes():
    collector, _ = _collector("ShortCartPole-v0", cls=EpisodeCollector, episodes_per_batch=4)
    b = collector.collect()
    assert b.mask.shape == (4, 5) and bool(b.mask.all())  # 4 episodes of exactly 5 steps
    assert b.steps == 20
    assert (b.bootstrap_value != 0).all()  # truncated: continue from V(final obs)
    collector, _ = _collector("CartPole-v1", cls=EpisodeCollector, episodes_per_batch=6)
    b = collector.collect()
    lengths = b.mask.sum(1)
    assert lengths.max() == b.mask.shape[1] and b.steps == int(lengths.sum())
    assert torch.equal(b.mask, torch.arange(b.mask.shape[1]) < lengths[:, None])
    assert (b.bootstrap_value == 0).all() and b.terminated[b.mask].sum() == 6
