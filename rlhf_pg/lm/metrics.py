"""The metrics of one PPO step, averaged over processes (names as in ``classic_control``
where the meaning is the same: ``loss/policy``, ``policy/clipfrac``, ...)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..core import explained_variance, masked_mean, masked_var
from .advantages import Advantages
from .config import PPOConfig
from .rollout import Rollout


def global_mean(accelerator, x: Tensor, mask: Tensor | None = None) -> float:
    """Mean of ``x`` (over ``mask``) across every process."""
    x = x.float().to(accelerator.device)
    mask = None if mask is None else mask.to(accelerator.device)
    return float(masked_mean(x, mask, distributed=True))


def global_nanmean(accelerator, x: Tensor) -> float:
    """Mean of the non-NaN entries of ``x`` across every process (a reward component is NaN
    where it does not apply); NaN when no process has one."""
    applies = ~torch.isnan(x)
    both = torch.stack([x.float().nan_to_num(0.0).sum(), applies.sum().float()])
    total, count = accelerator.reduce(both.to(accelerator.device), "sum").tolist()
    return total / count if count else math.nan


def gather_valid(accelerator, x: Tensor, mask: Tensor) -> Tensor:
    """Valid entries of x from every process, concatenated (uneven sizes allowed)."""
    flat = x[mask].float()
    if accelerator.num_processes == 1:
        return flat
    counts = accelerator.gather(torch.tensor([flat.numel()], device=flat.device))
    padded = accelerator.gather(accelerator.pad_across_processes(flat, dim=0))
    padded = padded.view(accelerator.num_processes, -1)
    return torch.cat([padded[i, : int(n)] for i, n in enumerate(counts)])


def rollout_metrics(
    accelerator, rollout: Rollout, scores: Tensor, adv: Advantages, config: PPOConfig
) -> dict[str, float]:
    """Scores, KL, response lengths, entropy and (PPO) value statistics of the rollout."""
    mask = rollout.response_mask
    metrics = {
        "score/mean": global_mean(accelerator, scores),
        "score/std": math.sqrt(float(masked_var(scores, distributed=True))),
        "score/shaped_mean": global_mean(accelerator, adv.shaped_scores),
        # not measured (NaN; null in metrics.jsonl) when the KL coefficient is fixed at 0
        "kl/token": math.nan if adv.kl is None else global_mean(accelerator, adv.kl, mask),
        "kl/seq": math.nan if adv.kl is None else global_mean(accelerator, adv.kl.sum(dim=1)),
        "response/length": global_mean(accelerator, rollout.response_lengths),
        "response/eos_rate": global_mean(accelerator, rollout.has_stop),
    }
    if rollout.entropy is not None:
        metrics["entropy"] = global_mean(accelerator, rollout.entropy, mask)
    if config.uses_critic:
        metrics["value/mean"] = global_mean(accelerator, rollout.values, mask)
        metrics["value/explained_variance"] = explained_variance(
            gather_valid(accelerator, rollout.values, mask),
            gather_valid(accelerator, adv.returns, mask),
        )
    return metrics


def update_metrics(accelerator, stats: dict[str, list[Tensor]]) -> dict[str, float]:
    """Per-minibatch statistics averaged over the step. Loss terms and PPO statistics are
    each process's share of a global-minibatch value, so processes add up; the rest
    (grad norm, epochs) is the same on every process."""
    out = {}
    for name, values in stats.items():
        mean = torch.stack(values).float().mean().to(accelerator.device)
        shared = name.startswith(("loss/", "policy/"))
        out[name] = float(accelerator.reduce(mean, "sum")) if shared else float(mean)
    return out


def timing_metrics(accelerator, rollout: Rollout, update_seconds: float) -> dict[str, float]:
    """Where the step's time went, and its throughput over all processes."""
    step_seconds = (
        rollout.generate_seconds + rollout.forward_seconds + rollout.reward_seconds + update_seconds
    )
    tokens = float(accelerator.reduce(rollout.response_lengths.sum().float(), "sum"))
    completions = len(rollout) * accelerator.num_processes
    return {
        "time/generate": rollout.generate_seconds,
        "time/forward": rollout.forward_seconds,
        "time/reward": rollout.reward_seconds,
        "time/update": update_seconds,
        "time/step": step_seconds,
        "throughput/tokens_per_s": tokens / step_seconds,
        "throughput/completions_per_s": completions / step_seconds,
    }
