"""Importance weights for estimates of one policy from samples of another.

Rows are trajectories (episodes or completions) of the behaviour policy;
``mask`` marks their valid steps, as everywhere in the core.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite, check_optional_mask, check_same_shape, check_tensor


def _log_ratios(logprobs: Tensor, behaviour_logprobs: Tensor, mask: Tensor | None) -> Tensor:
    check_tensor("logprobs", logprobs, ndim=2)
    check_tensor("behaviour_logprobs", behaviour_logprobs, ndim=2)
    check_same_shape("logprobs", logprobs, behaviour_logprobs=behaviour_logprobs)
    mask = check_optional_mask(mask, "logprobs", logprobs)
    check_finite(mask, logprobs=logprobs, behaviour_logprobs=behaviour_logprobs)
    diff = logprobs - behaviour_logprobs
    return diff if mask is None else torch.where(mask, diff, torch.zeros_like(diff))


def step_ratios(logprobs: Tensor, behaviour_logprobs: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Per-step ratios, the weights of the PPO/TRPO surrogate.

    .. math:: \rho_t = \frac{\pi(a_t \mid s_t)}{\mu(a_t \mid s_t)}
              = \exp(\log\pi(a_t \mid s_t) - \log\mu(a_t \mid s_t))

    Returns (B, T); 1 at masked steps.
    """
    return torch.exp(_log_ratios(logprobs, behaviour_logprobs, mask))


def trajectory_log_weights(
    logprobs: Tensor, behaviour_logprobs: Tensor, mask: Tensor | None = None
) -> Tensor:
    r"""Log of the whole-trajectory importance weight of each row.

    .. math:: \log w(\tau) = \sum_t \log\pi(a_t \mid s_t) - \log\mu(a_t \mid s_t)

    (the dynamics cancel). :math:`w` is a product of T ratios, so its variance
    grows exponentially with the horizon. Returns (B,).
    """
    return _log_ratios(logprobs, behaviour_logprobs, mask).sum(dim=1)


def effective_sample_size(log_weights: Tensor) -> Tensor:
    r"""Kish's effective sample size of a set of importance weights.

    .. math:: \mathrm{ESS} = \frac{(\sum_i w_i)^2}{\sum_i w_i^2}

    computed from log-weights (shifted by their maximum, which cancels) so
    that weights of exp(700) do not overflow. Equals n for equal weights, 1
    when one weight dominates.

    Args:
        log_weights: (n,) log importance weights, one per sample.

    Returns:
        0-dim tensor in [1, n].
    """
    check_tensor("log_weights", log_weights, ndim=1)
    check_finite(None, log_weights=log_weights)
    w = torch.exp(log_weights - log_weights.max())
    return w.sum() ** 2 / (w**2).sum()
