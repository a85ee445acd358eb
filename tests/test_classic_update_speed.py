"""The faster PPO update (one gather per epoch, grad clipping without torch's grouping) takes
bit-identical steps to a plain PyTorch reference written out here: per-minibatch index
gathers and ``torch.nn.utils.clip_grad_norm_``, with the same seed."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from classic_control.algos import REGISTRY
from classic_control.algos.base import (
    actor_critic_params,
    clip_grad_norm,
    make_optimizer,
    param_groups,
)
from classic_control.envs import probe_env
from classic_control.rollout import VectorCollector
from classic_control.settings import resolve
from rlhf_pg.core import ppo_clip_loss, value_loss, whiten


@pytest.mark.parametrize("max_norm", [0.5, 1e9, 0.0])
def test_clip_grad_norm_is_bit_identical_to_torch(max_norm):
    torch.manual_seed(0)
    shapes = [(64, 4), (64,), (64, 64), (2, 64), (2,), (1, 64), (1,)]
    grads = [torch.randn(s) * 3 for s in shapes]
    ours = [g.clone() for g in grads]
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    if max_norm > 0:
        expected = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        expected = torch.nn.utils.get_total_norm([p.grad for p in params])
    got = clip_grad_norm(ours, max_norm)
    assert torch.equal(got, expected)
    assert all(torch.equal(a, p.grad) for a, p in zip(ours, params))
    assert float(clip_grad_norm([], 1.0)) == 0.0


def _reference_ppo_update(cfg, agent, optimizer, batch, adv, ret, clip):
    """PPO-clip epochs as a plain loop: gather each minibatch by index, torch's clipping."""
    obs, actions = batch.flat()
    n = obs.shape[0]
    old_logp = batch.logprobs.reshape(1, n)
    adv, ret = adv.reshape(1, n), ret.reshape(1, n)
    mb = n // cfg.num_minibatches
    params = list(agent.parameters())
    for _ in range(cfg.update_epochs):
        perm = torch.randperm(n)
        for start in range(0, n, mb):
            idx = perm[start : start + mb]
            logp, ent, v = agent.evaluate(obs[idx], actions[idx], entropy_grad=True)
            a = whiten(adv[:, idx]) if cfg.norm_adv else adv[:, idx]
            pg = ppo_clip_loss(logp.view(1, -1), old_logp[:, idx], a, clip_eps=clip)
            vl = value_loss(v.view(1, -1), ret[:, idx])
            loss = pg.loss - cfg.entropy_coef * ent.mean() + cfg.vf_coef * vl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_ppo_update_takes_the_reference_steps_bit_for_bit(env_id):
    overrides = {
        "seed": 3, "num_envs": 2, "num_steps": 32, "num_minibatches": 4, "update_epochs": 3,
        "entropy_coef": 0.01, "clip_vloss": False, "anneal_clip": False, "max_grad_norm": 0.5,
        "target_kl": None,
    }  # fmt: skip
    cfg, _ = resolve("ppo", env_id, overrides)
    spec = probe_env(env_id)
    torch.manual_seed(0)
    algo = REGISTRY["ppo"](cfg, REGISTRY["ppo"].build_agent(spec, cfg))
    reference_agent = copy.deepcopy(algo.agent)
    reference_opt = make_optimizer(cfg, param_groups(cfg, *actor_critic_params(reference_agent)))
    collector = VectorCollector(env_id, spec, cfg, algo.agent)
    try:
        for _ in range(2):  # the second update starts from Adam state built by the first
            batch = collector.collect()
            adv, ret = algo.advantages(batch)
            torch.manual_seed(11)
            metrics = algo.update(batch, progress_left=1.0)
            torch.manual_seed(11)
            _reference_ppo_update(
                cfg, reference_agent, reference_opt, batch, adv, ret, cfg.clip_eps
            )
            for (name, p), q in zip(algo.agent.named_parameters(), reference_agent.parameters()):
                assert torch.equal(p, q), name
            assert math.isfinite(metrics["grad_norm"]) and metrics["grad_norm"] > 0
    finally:
        collector.close()
