r"""Generalized state-dependent exploration (gSDE; Raffin, Kober and Stulp, 2021).

Instead of fresh independent noise at every step, gSDE draws a random matrix
:math:`W \in \mathbb R^{F \times A}`, :math:`W_{j,a} \sim \mathcal N(0, \sigma_{j,a}^2)`,
holds it for several steps, and perturbs the action by a linear function of
the policy's features :math:`\theta(s) \in \mathbb R^F` (its last hidden layer):

.. math:: u = \mu(s) + \theta(s)^\top W

While W is held the noise is a smooth function of the state, so consecutive
actions are correlated and exploration can commit to a direction (what
MountainCar needs to reach the flag). For a fixed state and a fresh W the
noise is Gaussian with a state-dependent variance, which is what the
log-prob of the policy uses:

.. math:: \varepsilon_a(s) = \sum_j \theta_j(s) W_{j,a} \sim
          \mathcal N\Big(0, \sum_j \theta_j(s)^2 \sigma_{j,a}^2\Big)

The functions here are pure; drawing W (an RNG call) is the caller's job.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite, check_positive, check_tensor


def _check_features(features: Tensor) -> None:
    check_tensor("features", features, ndim=2, dims="(batch, features)")


def gsde_log_std(features: Tensor, log_std: Tensor, *, eps: float = 1e-6) -> Tensor:
    r"""Per-action log-std of the gSDE noise at each state.

    .. math:: \log\sigma_a(s) = \tfrac12 \log\Big(\sum_j \theta_j(s)^2 \,
              e^{2 \log\sigma_{j,a}} + \epsilon\Big)

    Args:
        features: (B, F) the policy's features :math:`\theta(s)` (with grad when
            the features are learned through the variance, as SAC does).
        log_std: (F, A) :math:`\log\sigma_{j,a}`, one learned value per
            (feature, action) pair.
        eps: variance floor >= 0 (1e-6 as in SB3): keeps the log finite where
            every feature is 0 (a state where all ReLUs are off).

    Returns:
        (B, A) :math:`\log\sigma_a(s)`; pass it with the mean to
        :func:`rlhf_pg.core.squashed_gaussian_log_prob` for the log-prob.
    """
    _check_features(features)
    check_tensor("log_std", log_std, ndim=2, dims="(features, actions)")
    if log_std.shape[0] != features.shape[1]:
        raise ValueError(
            f"log_std has {log_std.shape[0]} rows but features has {features.shape[1]} "
            "columns; log_std must be (features, actions)"
        )
    eps = check_positive("eps", eps, allow_zero=True)
    check_finite(None, features=features, log_std=log_std)
    variance = features.pow(2) @ torch.exp(2.0 * log_std) + eps
    return 0.5 * torch.log(variance)


def gsde_noise(features: Tensor, exploration_matrices: Tensor) -> Tensor:
    r"""The exploration noise :math:`\varepsilon(s) = \theta(s)^\top W` for a batch of states.

    .. math:: \varepsilon_{i,a} = \sum_j \theta_j(s_i) \, W^{(i)}_{j,a}

    Args:
        features: (B, F) :math:`\theta(s_i)`.
        exploration_matrices: (B, F, A), one matrix per row (one per env, so
            parallel envs explore independently).

    Returns:
        (B, A) the noise, added to the mean before the tanh.
    """
    _check_features(features)
    check_tensor(
        "exploration_matrices", exploration_matrices, ndim=3, dims="(batch, features, actions)"
    )
    if exploration_matrices.shape[:2] != features.shape:
        raise ValueError(
            f"exploration_matrices has shape {tuple(exploration_matrices.shape)} but features "
            f"has shape {tuple(features.shape)}; expected ({features.shape[0]}, "
            f"{features.shape[1]}, actions): one (features, actions) matrix per row"
        )
    check_finite(None, features=features, exploration_matrices=exploration_matrices)
    return torch.bmm(features.unsqueeze(1), exploration_matrices).squeeze(1)
