"""Policy-gradient losses over (batch, time) tensors with a validity mask."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from ._checks import (
    check_finite,
    check_optional_mask,
    check_positive,
    check_same_shape,
    check_tensor,
)

AggregationMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]
AGGREGATION_MODES: tuple[str, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")


def _zero_masked(x: Tensor, mask: Tensor | None) -> Tensor:
    # torch.where (not multiplication) so NaN/inf padding cannot leak into values or gradients;
    # mask=None (every element valid) skips it, which keeps small control minibatches fast
    return x if mask is None else torch.where(mask, x, torch.zeros_like(x))


def aggregate_loss(
    loss: Tensor,
    mask: Tensor | None = None,
    mode: AggregationMode = "token-mean",
    *,
    norm_constant: float | None = None,
) -> Tensor:
    r"""Reduce a (B, T) per-element loss to a scalar.

    * ``token-mean``: :math:`\sum_{b,t} m_{bt} \ell_{bt} / \sum_{b,t} m_{bt}`
      (every valid token weighs the same; long sequences weigh more).
    * ``seq-mean-token-mean``: :math:`\frac{1}{B'} \sum_b \frac{\sum_t m_{bt}\ell_{bt}}{\sum_t m_{bt}}`
      over the B' rows with at least one valid token (every sequence weighs the same).
    * ``seq-mean-token-sum``: :math:`\frac{1}{B} \sum_b \frac{\sum_t m_{bt}\ell_{bt}}{C}`
      with C = ``norm_constant`` (default T), unbiased by length (Dr. GRPO style).
    """
    check_tensor("loss", loss, ndim=2)
    mask = check_optional_mask(mask, "loss", loss)
    masked = _zero_masked(loss, mask)
    if mode not in AGGREGATION_MODES:
        raise ValueError(
            f"unknown loss aggregation mode {mode!r}; valid: {', '.join(AGGREGATION_MODES)}"
        )
    if mask is None and mode != "seq-mean-token-sum":
        return loss.mean()  # all valid: token-mean and seq-mean-token-mean coincide
    counts = mask.sum(dim=1) if mask is not None else None
    if mode == "token-mean":
        return masked.sum() / counts.sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        has = counts > 0
        per_seq = masked.sum(dim=1) / counts.clamp(min=1)
        return (per_seq * has).sum() / has.sum().clamp(min=1)
    const = loss.shape[1] if norm_constant is None else norm_constant
    check_positive("norm_constant", const)
    return masked.sum(dim=1).mean() / const


def reinforce_loss(
    logprobs: Tensor,
    weights: Tensor,
    mask: Tensor | None = None,
    *,
    aggregation: AggregationMode = "token-mean",
    norm_constant: float | None = None,
) -> Tensor:
    r"""REINFORCE pseudo-loss whose gradient is the policy gradient.

    .. math:: L = -\operatorname{agg}_{b,t}\big[\log\pi_\theta(a_{bt}\mid s_{bt})\,
              \operatorname{sg}(w_{bt})\big]

    ``w`` is the return, reward-to-go or advantage; it is detached (sg = stop
    gradient), so :math:`\nabla L = -\mathbb{E}[w \nabla \log \pi]`. The value of
    L itself is not the RL objective.

    Args:
        logprobs: (B, T) log-probabilities of the taken actions, with grad.
        weights: (B, T) per-step weights.
        mask: (B, T) bool.
        aggregation, norm_constant: see :func:`aggregate_loss`.
    """
    check_tensor("logprobs", logprobs, ndim=2)
    check_tensor("weights", weights, ndim=2)
    check_same_shape("logprobs", logprobs, weights=weights)
    mask = check_optional_mask(mask, "logprobs", logprobs)
    check_finite(mask, logprobs=logprobs, weights=weights)
    pg = -_zero_masked(logprobs, mask) * _zero_masked(weights.detach(), mask)
    return aggregate_loss(pg, mask, aggregation, norm_constant=norm_constant)


class PPOLoss(NamedTuple):
    """``loss`` (scalar, with grad), ``clip_fraction`` and ``approx_kl`` (detached scalars)."""

    loss: Tensor
    clip_fraction: Tensor
    approx_kl: Tensor


def ppo_clip_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor | None = None,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    aggregation: AggregationMode = "token-mean",
    norm_constant: float | None = None,
) -> PPOLoss:
    r"""PPO clipped surrogate (Schulman et al., 2017).

    .. math::
        \rho = \exp(\log\pi_\theta - \log\pi_{\text{old}}), \qquad
        L = \operatorname{agg}\Big[\max\big(-A\rho,\; -A\,\operatorname{clip}(\rho,
        1-\epsilon, 1+\epsilon_{\text{high}})\big)\Big]

    At :math:`\rho = 1` its gradient equals the REINFORCE gradient with weight A;
    elements whose clipped branch is active contribute no gradient.

    Also returns the fraction of valid elements whose ratio was clipped in
    the active branch and the k3 estimate of KL(old || new),
    :math:`\mathbb{E}[(\rho - 1) - \log\rho]`.

    Args:
        logprobs: (B, T) log-probs under the current policy (with grad).
        old_logprobs: (B, T) log-probs under the rollout policy.
        advantages: (B, T).
        mask: (B, T) bool.
        clip_eps: lower clip range; ``clip_eps_high`` defaults to it.
    """
    check_tensor("logprobs", logprobs, ndim=2)
    check_tensor("old_logprobs", old_logprobs, ndim=2)
    check_tensor("advantages", advantages, ndim=2)
    check_same_shape("logprobs", logprobs, old_logprobs=old_logprobs, advantages=advantages)
    check_positive("clip_eps", clip_eps)
    eps_high = check_positive("clip_eps_high", clip_eps if clip_eps_high is None else clip_eps_high)
    mask = check_optional_mask(mask, "logprobs", logprobs)
    check_finite(mask, logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages)

    adv = _zero_masked(advantages.detach(), mask)
    log_ratio = _zero_masked(logprobs, mask) - _zero_masked(old_logprobs.detach(), mask)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + eps_high)
    per_elem = torch.maximum(unclipped, clipped)
    loss = aggregate_loss(per_elem, mask, aggregation, norm_constant=norm_constant)
    with torch.no_grad():
        was_clipped = _zero_masked((clipped > unclipped).to(ratio.dtype), mask)
        n = ratio.numel() if mask is None else mask.sum().clamp(min=1)
        clip_fraction = was_clipped.sum() / n
        approx_kl = _zero_masked((ratio - 1) - log_ratio, mask).sum() / n
    return PPOLoss(loss, clip_fraction, approx_kl)


def value_loss(
    values: Tensor,
    returns: Tensor,
    mask: Tensor | None = None,
    *,
    old_values: Tensor | None = None,
    clip_eps: float | None = None,
    aggregation: AggregationMode = "token-mean",
    norm_constant: float | None = None,
) -> Tensor:
    r"""Squared-error value loss, optionally clipped around the rollout values.

    .. math::
        L = \tfrac12 \operatorname{agg}\big[(V - R)^2\big]
        \quad\text{or, clipped,}\quad
        \tfrac12 \operatorname{agg}\big[\max\big((V - R)^2,
        (V_{\text{old}} + \operatorname{clip}(V - V_{\text{old}}, -\epsilon_v, \epsilon_v) - R)^2\big)\big]

    Args:
        values: (B, T) predictions (with grad).
        returns: (B, T) targets.
        old_values: (B, T) predictions at rollout time; required when clipping.
        clip_eps: value clip range; None disables clipping.
    """
    check_tensor("values", values, ndim=2)
    check_tensor("returns", returns, ndim=2)
    check_same_shape("values", values, returns=returns, old_values=old_values)
    mask = check_optional_mask(mask, "values", values)
    check_finite(mask, values=values, returns=returns, old_values=old_values)
    values = _zero_masked(values, mask)
    target = _zero_masked(returns.detach(), mask)
    err = (values - target) ** 2
    if clip_eps is not None:
        check_positive("clip_eps", clip_eps)
        if old_values is None:
            raise ValueError(
                "value clipping (clip_eps set) needs old_values, the rollout-time values"
            )
        old = _zero_masked(old_values.detach(), mask)
        clipped = old + torch.clamp(values - old, -clip_eps, clip_eps)
        err = torch.maximum(err, (clipped - target) ** 2)
    return 0.5 * aggregate_loss(err, mask, aggregation, norm_constant=norm_constant)


def entropy(logits: Tensor) -> Tensor:
    r"""Entropy of categorical distributions given unnormalised logits.

    .. math:: H = -\sum_a p_a \log p_a, \qquad p = \operatorname{softmax}(z)

    Args:
        logits: (..., A) float; -inf entries are allowed (probability 0).

    Returns:
        (...) entropies (one per distribution); aggregate with
        :func:`aggregate_loss` and a mask.
    """
    check_tensor("logits", logits)
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    # -inf logits (top-k / banned tokens) have p = 0 and contribute 0, not NaN
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))
    return -plogp.sum(dim=-1).to(logits.dtype)


class KLPenaltyLoss(NamedTuple):
    """``loss`` (scalar, with grad); ``surrogate`` and ``approx_kl`` (detached scalars)."""

    loss: Tensor
    surrogate: Tensor
    approx_kl: Tensor


def ppo_kl_penalty_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor | None = None,
    *,
    kl_coef: float,
    aggregation: AggregationMode = "token-mean",
    norm_constant: float | None = None,
) -> KLPenaltyLoss:
    r"""PPO with a KL penalty instead of the clip (Schulman et al., 2017, section 4).

    .. math::
        \rho = \exp(\log\pi_\theta - \log\pi_{\text{old}}), \qquad
        L = \operatorname{agg}\big[-A\rho + \beta\,((\rho - 1) - \log\rho)\big]

    The second term is the k3 estimate of KL(old || new) on samples of the old
    policy; its gradient, :math:`(\rho - 1)\nabla\log\pi_\theta`, has the
    expectation of :math:`\nabla\,\mathrm{KL}(\pi_{\text{old}}\,\|\,\pi_\theta)`.
    Steer :math:`\beta` with :class:`AdaptiveKLController` from ``approx_kl``.

    Args:
        logprobs: (B, T) log-probs under the current policy (with grad).
        old_logprobs: (B, T) log-probs under the rollout policy.
        advantages: (B, T).
        mask: (B, T) bool.
        kl_coef: the penalty coefficient beta, >= 0.
    """
    check_tensor("logprobs", logprobs, ndim=2)
    check_tensor("old_logprobs", old_logprobs, ndim=2)
    check_tensor("advantages", advantages, ndim=2)
    check_same_shape("logprobs", logprobs, old_logprobs=old_logprobs, advantages=advantages)
    check_positive("kl_coef", kl_coef, allow_zero=True)
    mask = check_optional_mask(mask, "logprobs", logprobs)
    check_finite(mask, logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages)

    adv = _zero_masked(advantages.detach(), mask)
    log_ratio = _zero_masked(logprobs, mask) - _zero_masked(old_logprobs.detach(), mask)
    ratio = torch.exp(log_ratio)
    kl = (ratio - 1) - log_ratio
    surrogate = aggregate_loss(-adv * ratio, mask, aggregation, norm_constant=norm_constant)
    penalty = aggregate_loss(kl, mask, aggregation, norm_constant=norm_constant)
    return KLPenaltyLoss(surrogate + kl_coef * penalty, surrogate.detach(), penalty.detach())
