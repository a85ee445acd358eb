"""Experiment 2: importance sampling over a horizon, whole-trajectory versus per-step ratios.

The behaviour policy ``old`` is a PPO snapshot; the target ``new`` is one
policy-gradient step away from it, scaled so that the mean KL(old || new)
over old's states is ``step_kl`` (a trust-region-sized step). For every time
limit H (``max_episode_steps``), from episodes of ``old``:

* the whole-trajectory weight w = prod_t new(a_t|s_t) / old(a_t|s_t): its
  spread, the effective sample size, and the estimates of new's return;
* gradient estimates for ``new``: w * sum_t gamma^t (G_t - V(s_t)) grad log new
  (unbiased) and sum_t rho_t gamma^t (G_t - V(s_t)) grad log new (per-step
  ratios: the PPO/TRPO surrogate's gradient, which drops the change in the
  state distribution), against an on-policy reference from ``new``'s own
  episodes; V is new's value function fitted per horizon on separate episodes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from rlhf_pg.core import (
    discounted_returns,
    effective_sample_size,
    kl_k3,
    step_ratios,
    trajectory_log_weights,
)

from ..networks import ActorCritic
from ..rollout import Batch
from .estimators import episode_gradients, policy_params
from .sampling import episode_batches, fit_value_baseline


@dataclass
class ImportanceSettings:
    env_id: str = "CartPole-v1"
    seed: int = 0
    percent: int = 10  # the PPO snapshot used as the behaviour policy
    ppo_steps: int | None = None
    step_kl: float = 0.01
    horizons: tuple[int, ...] = (25, 50, 100, 200, 500)
    episodes: int = 300  # behaviour-policy episodes per horizon
    ref_episodes: int = 400  # target-policy episodes per horizon (on-policy reference)
    fit_episodes: int = 100  # target-policy episodes per horizon to fit its value baseline
    gamma: float = 0.99


def step_logprobs(agent: ActorCritic, b: Batch) -> Tensor:
    """log pi(a_t|s_t) of every stored step under ``agent``, (B, T), 0 at padding."""
    with torch.no_grad():
        k, t = b.mask.shape
        out = agent.policy_out(b.obs.reshape(k * t, -1))
        logp = agent._logprob(out, b.actions.reshape(k * t, *b.actions.shape[2:])).view(k, t)
    return torch.where(b.mask, logp, torch.zeros_like(logp))


def log_ratios(new: ActorCritic, old: ActorCritic, b: Batch) -> Tensor:
    """Per-step log(new/old) with both log-probs computed the same way (exactly 0 if new is old)."""
    return step_logprobs(new, b) - step_logprobs(old, b)


def kl_step(old: ActorCritic, batches: list[Batch], direction: Tensor, kl: float) -> ActorCritic:
    """old + alpha * direction, alpha found by bisection so the mean KL(old || new) equals kl."""
    names = list(policy_params(old))
    old_logp = torch.cat([step_logprobs(old, b)[b.mask] for b in batches])

    def moved(alpha: float) -> tuple[ActorCritic, float]:
        new = copy.deepcopy(old)
        params = dict(new.named_parameters())
        offset = 0
        with torch.no_grad():
            for name in names:
                p = params[name[len("agent.") :]]
                p += alpha * direction[offset : offset + p.numel()].view_as(p)
                offset += p.numel()
        new_logp = torch.cat([step_logprobs(new, b)[b.mask] for b in batches])
        return new, float(kl_k3(old_logp, new_logp).mean())

    lo, hi = 0.0, 1.0
    while moved(hi)[1] < kl:
        lo, hi = hi, hi * 2
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if moved(mid)[1] < kl else (lo, mid)
    return moved(0.5 * (lo + hi))[0]


def make_target(old: ActorCritic, spec, cfg, s: ImportanceSettings) -> ActorCritic:
    """One reward-to-go-minus-constant gradient step from ``old``, KL-sized."""
    batches = list(episode_batches(old, spec, cfg, 64, seed=s.seed + 50_000))
    rtg = [discounted_returns(b.rewards, s.gamma, mask=b.mask) for b in batches]
    b0 = float(torch.cat([r[b.mask] for r, b in zip(rtg, batches)]).mean())
    total = None
    for r, b in zip(rtg, batches):
        disc = s.gamma ** torch.arange(r.shape[1], dtype=r.dtype)
        w = torch.where(b.mask, (r - b0) * disc, torch.zeros_like(r))
        g = episode_gradients(old, b.obs, b.actions, b.mask, {"g": w})["g"].sum(0)
        total = g if total is None else total + g
    return kl_step(old, batches, total / total.norm(), s.step_kl)


def horizon_measurements(
    old: ActorCritic, new: ActorCritic, spec, cfg, s: ImportanceSettings, h: int, bar: tqdm
) -> dict:
    """Every number of one time limit ``h``; see the module docstring."""
    seed = s.seed + 100_000 * h
    # the baseline V(s) of new at this time limit, fitted on separate episodes of new
    critic = copy.deepcopy(new)
    fit = list(episode_batches(new, spec, cfg, s.fit_episodes, seed=seed + 2, max_episode_steps=h))
    fit_value_baseline(critic, fit, s.gamma)
    on_policy = episode_batches(new, spec, cfg, s.ref_episodes, seed=seed, max_episode_steps=h)
    ref_grads, new_returns = [], []
    for b in on_policy:
        rtg = discounted_returns(b.rewards, s.gamma, mask=b.mask)
        ref_grads.append(_grads(new, critic, b, rtg, s.gamma, torch.ones_like(rtg)))
        new_returns.append((b.rewards * b.mask).sum(1))
    reference = torch.cat(ref_grads).mean(0)
    bar.update(s.ref_episodes)
    full, per_step, log_w, returns, ratios, lengths = [], [], [], [], [], []
    for b in episode_batches(old, spec, cfg, s.episodes, seed=seed + 1, max_episode_steps=h):
        log_rho = log_ratios(new, old, b)
        lw = trajectory_log_weights(log_rho, torch.zeros_like(log_rho), b.mask)
        rho = step_ratios(log_rho, torch.zeros_like(log_rho), b.mask)
        rtg = discounted_returns(b.rewards, s.gamma, mask=b.mask)
        full.append(_grads(new, critic, b, rtg, s.gamma, lw.exp().unsqueeze(1).expand_as(rtg)))
        per_step.append(_grads(new, critic, b, rtg, s.gamma, rho))
        log_w.append(lw)
        returns.append(torch.where(b.mask, b.rewards, torch.zeros_like(b.rewards)).sum(1))
        ratios.append(rho[b.mask])
        lengths.append(b.mask.sum(1).float())
        bar.update(b.mask.shape[0])
    log_w_all, ret = torch.cat(log_w), torch.cat(returns)
    w = log_w_all.exp()
    new_return = float(torch.cat(new_returns).mean())
    return {
        "horizon": h,
        "mean_length": float(torch.cat(lengths).mean()),
        "ess_fraction": float(effective_sample_size(log_w_all)) / len(w),
        "log_weight_std": float(log_w_all.std()),
        "max_weight_share": float(w.max() / w.sum()),
        "step_ratio_std": float(torch.cat(ratios).std()),
        "return_old": float(ret.mean()),
        "return_new": new_return,
        "return_is": float((w * ret).mean()),
        "return_weighted_is": float((w * ret).sum() / w.sum()),
        "gradient": {
            "trajectory": _gradient_summary(torch.cat(full), reference),
            "per_step": _gradient_summary(torch.cat(per_step), reference),
        },
    }


def _grads(
    agent: ActorCritic, critic: ActorCritic, b: Batch, rtg: Tensor, gamma: float, ratio: Tensor
) -> Tensor:
    """Per-episode sum_t ratio_t * gamma^t * (G_t - V(s_t)) * grad log pi(a_t|s_t), (B, P)."""
    with torch.no_grad():
        values = critic.value(b.obs)
    disc = gamma ** torch.arange(rtg.shape[1], dtype=rtg.dtype)
    w = torch.where(b.mask, ratio * disc * (rtg - values), torch.zeros_like(rtg))
    return episode_gradients(agent, b.obs, b.actions, b.mask, {"g": w})["g"]


def _gradient_summary(g: Tensor, reference: Tensor) -> dict:
    mean, ref2 = g.mean(0), float(reference @ reference)
    total_var = float(((g - mean) ** 2).sum(1).mean()) * len(g) / (len(g) - 1)
    return {
        "total_variance": total_var,
        "reference_norm": ref2**0.5,
        "relative_variance": total_var / ref2,
        "relative_error": float((mean - reference).norm()) / ref2**0.5,
        "cosine": float(torch.nn.functional.cosine_similarity(mean, reference, dim=0)),
    }


def run(s: ImportanceSettings, out: Path) -> dict:
    from .snapshots import load_snapshots

    cfg, spec, agents = load_snapshots(
        s.env_id, s.seed, s.ppo_steps, out / "snapshots", [s.percent]
    )
    torch.manual_seed(s.seed)
    old = agents[s.percent]
    new = make_target(old, spec, cfg, s)
    total = len(s.horizons) * (s.episodes + s.ref_episodes)
    with tqdm(total=total, unit="episode", desc="importance sampling", dynamic_ncols=True) as bar:
        rows = [horizon_measurements(old, new, spec, cfg, s, h, bar) for h in s.horizons]
    settings = vars(s) | {"horizons": list(s.horizons)}
    return {"settings": settings, "horizons": rows}
