"""Experiment 1: variance, bias and batch-size behaviour of the policy-gradient estimators.

For each policy (random init and PPO snapshots):

1. fit the value baseline on ``fit_episodes`` episodes (and take the constant
   baseline, their mean reward-to-go);
2. the reference gradient: the mean of reward-to-go minus V over
   ``ref_episodes`` further episodes (unbiased, the lowest-variance unbiased one);
3. per-episode gradients of every estimator on ``episodes`` further episodes:
   total variance tr Cov, bias |mean - reference| with the noise floor it
   would show if unbiased, and the cosine between the mean of N episodes
   and the reference for N = 1, 2, 4, ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..config import Config
from ..envs import EnvSpec
from ..networks import ActorCritic
from .estimators import GAE_LAMBDAS, episode_gradients, estimator_weights
from .sampling import episode_batches, fit_value_baseline


@dataclass
class GradientSettings:
    env_id: str = "CartPole-v1"
    seed: int = 0
    percents: tuple[int, ...] = (0, 10, 50, 100)  # of the PPO run's steps; 0 = random init
    ppo_steps: int | None = None  # None: the preset's budget
    fit_episodes: int = 100
    ref_episodes: int = 600
    episodes: int = 400
    gamma: float = 0.99


def policy_gradients(
    agent: ActorCritic, spec: EnvSpec, cfg: Config, s: GradientSettings, *, bar: tqdm
) -> dict:
    """Every measurement of one policy; see the module docstring."""
    fit = list(episode_batches(agent, spec, cfg, s.fit_episodes, seed=s.seed + 10_000))
    constant, fit_loss = fit_value_baseline(agent, fit, s.gamma)
    ref_sum, ref_sq, ref_n, lengths = None, 0.0, 0, []
    for b in episode_batches(agent, spec, cfg, s.ref_episodes, seed=s.seed + 20_000):
        g = _gradients(agent, b, s.gamma, constant, only="rtg_minus_value")["rtg_minus_value"]
        ref_sum = g.sum(0) if ref_sum is None else ref_sum + g.sum(0)
        ref_sq += float((g**2).sum())
        ref_n += g.shape[0]
        lengths += b.mask.sum(1).tolist()
        bar.update(g.shape[0])
    reference = ref_sum / ref_n
    ref_var = ref_sq / ref_n - float(reference @ reference)
    pool: dict[str, list[Tensor]] = {}
    for b in episode_batches(agent, spec, cfg, s.episodes, seed=s.seed + 30_000):
        for name, g in _gradients(agent, b, s.gamma, constant).items():
            pool.setdefault(name, []).append(g)
        lengths += b.mask.sum(1).tolist()
        bar.update(b.mask.shape[0])
    grads = {k: torch.cat(v) for k, v in pool.items()}
    return {
        "mean_episode_length": sum(lengths) / len(lengths),
        "reference_norm": float(reference.norm()),
        "reference_noise": math.sqrt(max(ref_var, 0.0) / ref_n),
        "constant_baseline": constant,
        "value_fit_loss": fit_loss,
        "estimators": {k: _summary(g, reference, ref_var / ref_n) for k, g in grads.items()},
    }


def _gradients(
    agent: ActorCritic, b, gamma: float, constant: float, only: str | None = None
) -> dict[str, Tensor]:
    with torch.no_grad():
        values = torch.where(b.mask, agent.value(b.obs), torch.zeros_like(b.rewards))
    weights = estimator_weights(
        b.rewards,
        b.mask,
        b.terminated,
        values,
        gamma=gamma,
        constant_baseline=constant,
        bootstrap_value=b.bootstrap_value,
        lambdas=() if only else GAE_LAMBDAS,
    )
    if only:
        weights = {only: weights[only]}
    return episode_gradients(agent, b.obs, b.actions, b.mask, weights)


def batch_sizes(n: int) -> list[int]:
    """1, 2, 4, ... up to n / 4, so even the largest size has four independent batches."""
    out, size = [], 1
    while size * 4 <= n:
        out.append(size)
        size *= 2
    return out


def _summary(g: Tensor, reference: Tensor, ref_mean_var: float) -> dict:
    n = g.shape[0]
    mean = g.mean(0)
    total_var = float(((g - mean) ** 2).sum(1).mean()) * n / (n - 1)
    cosine = {}
    for size in batch_sizes(n):
        means = g[: n - n % size].view(-1, size, g.shape[1]).mean(1)
        cos = torch.nn.functional.cosine_similarity(means, reference.unsqueeze(0), dim=1)
        cosine[str(size)] = {
            "mean": float(cos.mean()),
            "std": float(cos.std()),
            "batches": len(cos),
        }
    return {
        "total_variance": total_var,
        "relative_variance": total_var / max(float(reference @ reference), 1e-30),
        "bias": float((mean - reference).norm()),
        # the |mean - reference| an unbiased estimator would show from noise alone
        "bias_noise_floor": math.sqrt(total_var / n + ref_mean_var),
        "cosine_vs_batch_size": cosine,
    }


def run(s: GradientSettings, out: Path) -> dict:
    from .snapshots import load_snapshots

    cfg, spec, agents = load_snapshots(
        s.env_id, s.seed, s.ppo_steps, out / "snapshots", list(s.percents)
    )
    torch.manual_seed(s.seed)
    total = len(agents) * (s.ref_episodes + s.episodes)  # the fit episodes are not counted
    results = {}
    with tqdm(total=total, unit="episode", desc="gradient estimators", dynamic_ncols=True) as bar:
        for percent, agent in agents.items():
            results[str(percent)] = policy_gradients(agent, spec, cfg, s, bar=bar)
    return {"settings": vars(s) | {"percents": list(s.percents)}, "policies": results}
