"""From sequence scores and per-token log-probs to per-token advantages.

Every formula is a call into ``rlhf_pg.core``; this module only arranges the
token layout: responses are right-padded rows, the sequence score lands on
the LAST VALID response token, and the KL penalty is per token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core import (
    batch_mean_baseline,
    gae,
    grpo_advantages,
    kl_estimate,
    rloo_advantages,
    whiten,
)
from .config import PPOConfig
from .rollout import Rollout


def last_valid_index(mask: Tensor) -> Tensor:
    """(B,) index of the last True of each right-padded row (rows must have one)."""
    lengths = mask.sum(dim=1)
    if bool((lengths == 0).any()):
        row = int((lengths == 0).nonzero()[0])
        raise ValueError(f"response {row} has no valid token; every response needs at least one")
    return lengths - 1


def shape_scores(scores: Tensor, has_stop: Tensor, config: PPOConfig) -> Tensor:
    """Missing-stop penalty, then optional whitening over the global batch, then clipping."""
    scores = scores - config.missing_eos_penalty * (~has_stop).to(scores.dtype)
    if config.normalize_scores:
        scores = whiten(scores, distributed=True)
    if config.score_clip > 0:
        scores = scores.clamp(-config.score_clip, config.score_clip)
    return scores


def per_token_kl(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, estimator: str) -> Tensor:
    """KL(pi || ref) estimate per response token; 0 at padding."""
    return kl_estimate(logprobs, ref_logprobs, estimator, mask=mask)


def token_rewards(scores: Tensor, kl: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """r_t = -beta * kl_t on every valid token, plus the score on the last valid token."""
    rewards = -kl_coef * kl
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last_valid_index(mask)] += scores.to(rewards.dtype)
    return torch.where(mask, rewards, torch.zeros_like(rewards))


def ppo_advantages(
    rewards: Tensor, values: Tensor, mask: Tensor, config: PPOConfig
) -> tuple[Tensor, Tensor]:
    """GAE over the response tokens (the episode ends after the last valid token),
    advantages whitened over the valid tokens of all processes."""
    advantages, returns = gae(rewards, values, gamma=config.gamma, lam=config.gae_lambda, mask=mask)
    if config.whiten_advantages:
        advantages = whiten(advantages, mask, distributed=True)
    return advantages, returns


def sequence_advantages(
    scores: Tensor,
    config: PPOConfig,
    gather: Callable[[Tensor], Tensor],
    rank: int,
) -> Tensor:
    """Critic-free (B,) advantages. Groups of ``samples_per_prompt`` rows are local to a
    process; the REINFORCE baseline is the mean over the global batch (``gather``)."""
    k = config.samples_per_prompt
    if config.estimator == "rloo":
        return rloo_advantages(scores.view(-1, k)).reshape(-1)
    if config.estimator == "grpo":
        return grpo_advantages(scores.view(-1, k), scale_by_std=config.grpo_scale_by_std).reshape(
            -1
        )
    if config.estimator == "reinforce":
        everyone = gather(scores)
        n = scores.shape[0]
        return batch_mean_baseline(everyone)[rank * n : (rank + 1) * n]
    raise ValueError(f"estimator {config.estimator!r} has no sequence-level advantage")


@dataclass
class Advantages:
    """What the update needs from a scored rollout, all (B, R) with zeros at padding."""

    advantages: Tensor
    returns: Tensor | None  # critic targets (estimator "ppo" only)
    kl: Tensor | None  # per-token KL(pi || ref) estimate; None when not measured (no reference)
    shaped_scores: Tensor  # (B,) scores after the missing-stop penalty, whitening, clipping


def compute_advantages(
    rollout: Rollout, scores: Tensor, config: PPOConfig, kl_coef: float, accelerator
) -> Advantages:
    """KL shaping, then advantages: GAE on per-token rewards for PPO, or one critic-free
    advantage per sequence broadcast to its tokens. ``kl_coef`` (beta) weighs the KL
    penalty in the reward when ``kl_penalty == "reward"``; otherwise the KL stays out. A rollout
    without reference log-probs (the KL coefficient fixed at 0) has no KL: it would weigh nothing."""
    mask = rollout.response_mask
    kl = None
    if rollout.ref_logprobs is not None:
        kl = per_token_kl(rollout.logprobs, rollout.ref_logprobs, mask, config.kl_estimator)
    elif kl_coef != 0:
        raise ValueError(f"kl_coef={kl_coef} needs the rollout's reference log-probs")
    shaped = shape_scores(scores, rollout.has_stop, config)
    kl_in_reward = config.kl_penalty == "reward" and kl is not None
    if config.uses_critic:
        penalty = kl if kl_in_reward else torch.zeros_like(rollout.logprobs)
        rewards = token_rewards(shaped, penalty, mask, kl_coef)
        advantages, returns = ppo_advantages(rewards, rollout.values, mask, config)
    else:
        seq_scores = shaped - kl_coef * kl.sum(dim=1) if kl_in_reward else shaped
        seq_adv = sequence_advantages(
            seq_scores, config, accelerator.gather, accelerator.process_index
        )
        advantages, returns = seq_adv[:, None].expand_as(mask).float(), None
    return Advantages(advantages, returns, kl, shaped)


def update_batch(rollout: Rollout, adv: Advantages) -> dict[str, Tensor | None]:
    """The tensors the PPO update reads, with padding zeroed so it can never reach a gradient."""
    mask = rollout.response_mask

    def valid(x: Tensor | None) -> Tensor | None:
        return None if x is None else torch.where(mask, x, torch.zeros_like(x))

    return {
        "query_ids": rollout.query_ids,
        "query_mask": rollout.query_mask,
        "response_ids": rollout.response_ids,
        "response_mask": mask,
        "old_logprobs": valid(rollout.logprobs),
        "ref_logprobs": valid(rollout.ref_logprobs),
        "advantages": valid(adv.advantages),
        "old_values": valid(rollout.values),
        "returns": valid(adv.returns),
    }
