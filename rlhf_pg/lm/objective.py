"""The loss of one micro-batch: PPO-clip + value loss - entropy bonus (+ KL term).

Tensors are padded on the right to ``max_new_tokens`` before aggregation so
that ``seq-mean-token-sum`` divides by the same constant on every process and
micro-batch, whatever their longest response.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import aggregate_loss, entropy, kl_estimate, ppo_clip_loss, value_loss
from .config import PPOConfig
from .rollout import response_forward

BATCH_KEYS = (
    "query_ids",
    "query_mask",
    "response_ids",
    "response_mask",
    "old_logprobs",
    "ref_logprobs",
    "advantages",
    "old_values",
    "returns",
)


def _pad_to(x: Tensor, width: int) -> Tensor:
    return F.pad(x, (0, width - x.shape[1]))


def trim_batch(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop prompt columns that are padding in every row and response columns past the
    longest response: pure padding, so no result changes, only the work."""
    q_keep = batch["query_mask"].any(dim=0).nonzero()
    r_len = int(batch["response_mask"].sum(dim=1).max())
    out = {}
    for key, value in batch.items():
        if value is None:
            out[key] = None
        elif key.startswith("query"):
            out[key] = value[:, int(q_keep[0]) :]
        else:
            out[key] = value[:, :r_len]
    return out


def micro_batch_loss(
    model, batch: dict[str, Tensor], config: PPOConfig, kl_coef: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Forward the policy (and value head) on one micro-batch and return (loss, stats)."""
    logprobs, values, logits = response_forward(
        model,
        batch["query_ids"],
        batch["query_mask"],
        batch["response_ids"],
        batch["response_mask"],
        temperature=config.temperature,
        with_values=config.uses_critic,
    )
    width = max(config.max_new_tokens, logprobs.shape[1])
    mask = _pad_to(batch["response_mask"], width)
    agg = config.loss_aggregation
    pg = ppo_clip_loss(
        _pad_to(logprobs, width),
        _pad_to(batch["old_logprobs"], width),
        _pad_to(batch["advantages"], width),
        mask,
        clip_eps=config.clip_eps,
        aggregation=agg,
    )
    loss = pg.loss
    stats = {
        "policy_loss": pg.loss.detach(),
        "clipfrac": pg.clip_fraction,
        "approx_kl": pg.approx_kl,
    }
    if config.uses_critic:
        vl = value_loss(
            _pad_to(values, width),
            _pad_to(batch["returns"], width),
            mask,
            old_values=_pad_to(batch["old_values"], width),
            clip_eps=config.clip_eps_value or None,
            aggregation=agg,
        )
        loss = loss + config.vf_coef * vl
        stats["value_loss"] = vl.detach()
    if config.entropy_coef > 0:
        ent = aggregate_loss(_pad_to(entropy(logits), width), mask, agg)
        loss = loss - config.entropy_coef * ent
    if config.kl_penalty == "loss" and kl_coef > 0:
        kl = kl_estimate(logprobs, batch["ref_logprobs"], config.kl_estimator)
        kl_loss = aggregate_loss(_pad_to(kl, width), mask, agg)
        loss = loss + kl_coef * kl_loss
        stats["kl_loss"] = kl_loss.detach()
    return loss, stats


def aggregation_weight(mask: Tensor, config: PPOConfig) -> Tensor:
    """What one micro-batch counts in its aggregation: valid tokens for token-mean,
    sequences otherwise. Summed over micro-batches and processes it gives the
    normaliser that makes the split exact."""
    if config.loss_aggregation == "token-mean":
        return mask.sum().to(torch.float32)
    return torch.tensor(float(mask.shape[0]), device=mask.device)
