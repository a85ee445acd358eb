"""Critic-free advantages for groups of samples drawn for the same prompt (or start state)."""

from __future__ import annotations

from torch import Tensor

from ._checks import check_finite, check_tensor


def _check_groups(scores: Tensor, min_group: int) -> None:
    check_tensor("scores", scores, ndim=2, dims="(groups, samples)")
    if scores.shape[1] < min_group:
        raise ValueError(
            f"scores has groups of {scores.shape[1]} sample(s) (shape {tuple(scores.shape)}); "
            f"this estimator needs at least {min_group} samples per group"
        )
    check_finite(scores=scores)


def rloo_advantages(scores: Tensor) -> Tensor:
    r"""REINFORCE leave-one-out advantages (Kool et al., 2019; Ahmadian et al., 2024).

    .. math:: A_{gi} = s_{gi} - \frac{1}{k-1}\sum_{j \ne i} s_{gj}
              = \frac{k}{k-1}\big(s_{gi} - \bar{s}_g\big)

    Each sample's baseline is the mean score of the other k-1 samples of its
    group, so it does not depend on the sample itself. Advantages sum to zero
    within each group.

    Args:
        scores: (G, k) scores, one row per group, k >= 2.

    Returns:
        (G, k) advantages.
    """
    _check_groups(scores, 2)
    k = scores.shape[1]
    others_mean = (scores.sum(dim=1, keepdim=True) - scores) / (k - 1)
    return scores - others_mean


def grpo_advantages(scores: Tensor, *, scale_by_std: bool = True, eps: float = 1e-4) -> Tensor:
    r"""Group-relative advantages (Shao et al., 2024).

    .. math:: A_{gi} = \frac{s_{gi} - \bar{s}_g}{\sigma_g + \epsilon}
              \quad\text{or}\quad s_{gi} - \bar{s}_g \ \text{without std scaling}

    :math:`\sigma_g` is the (unbiased) standard deviation of the group's
    scores. Advantages sum to zero within each group.

    Args:
        scores: (G, k) scores, k >= 2.
        scale_by_std: divide by the group std (GRPO); False gives Dr. GRPO.
        eps: added to the std so constant groups give zero advantages.

    Returns:
        (G, k) advantages.
    """
    _check_groups(scores, 2)
    centred = scores - scores.mean(dim=1, keepdim=True)
    if not scale_by_std:
        return centred
    return centred / (scores.std(dim=1, keepdim=True) + eps)


def batch_mean_baseline(scores: Tensor) -> Tensor:
    r"""REINFORCE with the batch mean as baseline: :math:`A_i = s_i - \bar{s}`.

    Args:
        scores: (B,) or (G, k); the mean is taken over all elements.

    Returns:
        advantages of the same shape as ``scores``.
    """
    check_tensor("scores", scores)
    check_finite(scores=scores)
    return scores - scores.mean()
