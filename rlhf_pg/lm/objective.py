"""The loss of one micro-batch, returned as separate terms, and the one place the
coefficients combine them.

Tensors are padded on the right to one width for the whole step (``max_new_tokens``, or
the longest response when longer ones are given) before aggregation, so that
``seq-mean-token-sum`` divides by the same constant on every process and micro-batch,
whatever their longest response.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import aggregate_loss, kl_estimate, ppo_clip_loss, value_loss
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


class LossTerms(NamedTuple):
    """Each term aggregated over its micro-batch; None where the config does not use it."""

    policy: Tensor  # PPO-clip surrogate (REINFORCE at ratio 1)
    value: Tensor | None  # clipped value loss (estimator "ppo")
    entropy: Tensor | None  # mean entropy of the policy (entropy_coef > 0)
    kl: Tensor | None  # KL(pi || ref) estimate as a loss term (kl_penalty "loss")


def total_loss(terms: LossTerms, config: PPOConfig, kl_coef: float) -> Tensor:
    r""":math:`L = L_{\text{policy}} + c_V L_{\text{value}} - c_H H + \beta\, L_{\text{KL}}`,
    the only place the coefficients are applied."""
    loss = terms.policy
    if terms.value is not None:
        loss = loss + config.vf_coef * terms.value
    if terms.entropy is not None:
        loss = loss - config.entropy_coef * terms.entropy
    if terms.kl is not None:
        loss = loss + kl_coef * terms.kl
    return loss


def _pad_to(x: Tensor, width: int) -> Tensor:
    return F.pad(x, (0, width - x.shape[1]))


def trim_batch(
    batch: dict[str, Tensor], query_start: int, response_width: int
) -> dict[str, Tensor]:
    """Drop the prompt columns before ``query_start`` and the response columns from
    ``response_width`` on: padding in every row (see :func:`padding_bounds`), so no result
    changes, only the work."""
    out = {}
    for key, value in batch.items():
        if value is None:
            out[key] = None
        elif key.startswith("query"):
            out[key] = value[:, query_start:]
        else:
            out[key] = value[:, :response_width]
    return out


def padding_bounds(query_mask: Tensor, response_mask: Tensor) -> tuple[list[int], list[int]]:
    """Per row, on the host (one transfer per rollout, not one per micro-batch): the first
    valid prompt column and the number of response columns up to the last valid one. A set
    of rows may drop the prompt columns before its smallest start and the response columns
    past its largest width."""
    first = torch.where(query_mask.any(dim=1), query_mask.int().argmax(dim=1), 0)
    cols = torch.arange(1, response_mask.shape[1] + 1, device=response_mask.device)
    width = (response_mask * cols).amax(dim=1)
    return first.tolist(), width.tolist()


def loss_terms(
    model, batch: dict[str, Tensor], config: PPOConfig, *, with_kl: bool, pad_width: int
) -> tuple[LossTerms, dict[str, Tensor]]:
    """Forward the policy (and value head) on one micro-batch; returns the loss terms and
    the PPO statistics (clip fraction, approx-KL). ``with_kl``: compute the KL term;
    ``pad_width``: the response width every micro-batch of the step is aggregated at.

    With one epoch of one minibatch every micro-batch is evaluated at the parameters that
    sampled it, so the old log-probs are the new ones detached: the ratio is 1 exactly
    (the rollout's copy would differ by rounding), and its gradient is the log-prob's."""
    logprobs, values, token_entropy = response_forward(
        model,
        batch["query_ids"],
        batch["query_mask"],
        batch["response_ids"],
        batch["response_mask"],
        temperature=config.temperature,
        with_values=config.uses_critic,
        with_entropy=config.entropy_coef > 0,
    )
    width = pad_width
    mask = _pad_to(batch["response_mask"], width)
    agg = config.loss_aggregation

    def aggregate(x: Tensor) -> Tensor:
        return aggregate_loss(_pad_to(x, width), mask, agg)

    on_policy = config.update_epochs == 1 and config.num_minibatches == 1
    old_logprobs = logprobs.detach() if on_policy else batch["old_logprobs"]
    pg = ppo_clip_loss(
        _pad_to(logprobs, width),
        _pad_to(old_logprobs, width),
        _pad_to(batch["advantages"], width),
        mask,
        clip_eps=config.clip_eps,
        clip_eps_high=config.clip_eps_high or None,
        aggregation=agg,
    )
    value_term = entropy_term = kl_term = None
    if config.uses_critic:
        value_term = value_loss(
            _pad_to(values, width),
            _pad_to(batch["returns"], width),
            mask,
            old_values=_pad_to(batch["old_values"], width),
            clip_eps=config.clip_eps_value or None,
            aggregation=agg,
        )
    if config.entropy_coef > 0:
        entropy_term = aggregate(token_entropy)
    if with_kl:
        kl_term = aggregate(kl_estimate(logprobs, batch["ref_logprobs"], config.kl_estimator))
    terms = LossTerms(pg.loss, value_term, entropy_term, kl_term)
    return terms, {"policy/clipfrac": pg.clip_fraction, "policy/approx_kl": pg.approx_kl}


def aggregation_weight(mask: Tensor, config: PPOConfig) -> Tensor:
    """What one micro-batch counts in its aggregation: valid tokens for token-mean,
    sequences otherwise. Summed over micro-batches and processes it gives the
    normaliser that makes the split exact."""
    if config.loss_aggregation == "token-mean":
        return mask.sum().to(torch.float32)
    return torch.full((), float(mask.shape[0]), device=mask.device)  # a fill, not a host copy
