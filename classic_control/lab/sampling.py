"""Episodes of a fixed policy, and the value baseline fitted to them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch

from rlhf_pg.core import discounted_returns, masked_mean, value_loss

from ..config import Config, ConfigError
from ..envs import EnvSpec
from ..networks import ActorCritic
from ..rollout import Batch, EpisodeCollector


def check_fixed_policy(cfg: Config) -> None:
    """The lab measures one fixed policy; a running observation normaliser would change it."""
    if cfg.norm_obs:
        raise ConfigError(
            f"the lab needs a policy without observation normalisation; {cfg.env_id}'s PPO "
            "settings use norm_obs (choose an env whose PPO preset does not, e.g. CartPole-v1)"
        )


def episode_batches(
    agent: ActorCritic,
    spec: EnvSpec,
    cfg: Config,
    episodes: int,
    *,
    seed: int,
    chunk: int = 32,
    max_episode_steps: int | None = None,
) -> Iterator[Batch]:
    """``episodes`` whole episodes in batches of at most ``chunk``, rows padded and masked.

    Each batch gets its own env seeds (``seed + 1000 * batch index``), so
    batches from different calls with different seeds are independent.
    """
    done = 0
    while done < episodes:
        k = min(chunk, episodes - done)
        run_cfg = dataclasses.replace(
            cfg, episodes_per_batch=k, seed=seed + 1000 * done, max_episode_steps=max_episode_steps
        )
        collector = EpisodeCollector(cfg.env_id, spec, run_cfg, agent)
        try:
            yield collector.collect()
        finally:
            collector.close()
        done += k


def fit_value_baseline(
    agent: ActorCritic, batches: list[Batch], gamma: float, *, iters: int = 300, lr: float = 3e-3
) -> tuple[float, float]:
    """Regress the agent's critic on Monte-Carlo reward-to-go of ``batches`` (core value loss).

    Returns ``(constant baseline, final value loss)``: the constant is the mean
    reward-to-go over all visited steps, the best constant in squared error.
    """
    obs = [b.obs[b.mask] for b in batches]
    targets = [discounted_returns(b.rewards, gamma, mask=b.mask)[b.mask] for b in batches]
    x, y = torch.cat(obs), torch.cat(targets)
    params = [*agent.value_head.parameters()]
    if agent.critic_body is not None:
        params += [*agent.critic_body.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    loss = torch.zeros(())
    for _ in range(iters):
        loss = value_loss(agent.value(x).unsqueeze(0), y.unsqueeze(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(masked_mean(y.unsqueeze(0))), float(loss.detach())
