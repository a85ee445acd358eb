"""Off-policy actor-critic math for continuous actions: TD targets, SAC terms, Polyak averaging.

The targets use the same episode-end semantics as :func:`rlhf_pg.core.gae`:

* ``terminated[i]``: the state reached by transition i is terminal; its
  value is 0 and the target does not bootstrap.
* a time-limit truncation is *not* terminal: the transition is stored with
  ``terminated = False`` and ``next_q`` evaluated at the true final
  observation, so the target bootstraps exactly as ``gae`` does at a
  truncated step through ``next_values``. The one-step target needs no
  ``truncated`` flag because nothing recurses past the next state.

Replay minibatches are flat, so these functions take any shape, ``(B,)``
for a minibatch or ``(B, T)`` for a rollout, but every argument must have
exactly the shape of ``rewards``; nothing broadcasts silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from ._checks import (
    check_finite,
    check_flags,
    check_positive,
    check_same_shape,
    check_tensor,
    check_unit_interval,
)

_LOG_2 = math.log(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _check_next(rewards: Tensor, terminated: Tensor | None, **next_terms: Tensor) -> Tensor:
    check_tensor("rewards", rewards)
    for name, t in next_terms.items():
        check_tensor(name, t)
    check_same_shape("rewards", rewards, **next_terms)
    done = check_flags("terminated", terminated, "rewards", rewards)
    check_finite(None, rewards=rewards, **next_terms)
    return done


def td_target(
    rewards: Tensor, next_q: Tensor, *, gamma: float, terminated: Tensor | None = None
) -> Tensor:
    r"""One-step TD target (DDPG's critic target).

    .. math:: y = r + \gamma \, (1 - \text{term}) \, Q'(s', a')

    Args:
        rewards: (B,) or (B, T) float.
        next_q: same shape, :math:`Q'(s', a')` of the target networks at the
            next observation (for a truncated transition, the true final
            observation); treated as a constant.
        gamma: discount in [0, 1].
        terminated: same shape, bool; True where s' is terminal (no bootstrap).
            None = no transition terminal.

    Returns:
        The target y, same shape, detached.
    """
    done = _check_next(rewards, terminated, next_q=next_q)
    gamma = check_unit_interval("gamma", gamma)
    alive = (~done).to(rewards.dtype)
    return (rewards + gamma * alive * next_q).detach()


def clipped_double_q_target(
    rewards: Tensor,
    next_q1: Tensor,
    next_q2: Tensor,
    *,
    gamma: float,
    terminated: Tensor | None = None,
) -> Tensor:
    r"""TD3's clipped double-Q target (Fujimoto et al., 2018).

    .. math:: y = r + \gamma \, (1 - \text{term}) \, \min\big(Q'_1(s', \tilde a'), Q'_2(s', \tilde a')\big)

    where :math:`\tilde a'` is the smoothed target action (the caller adds
    the clipped noise). Taking the minimum counters the over-estimation a
    single critic accumulates by maximising its own errors.

    Args:
        rewards: (B,) or (B, T) float.
        next_q1, next_q2: same shape, the two target critics at (s', a').
        gamma: discount in [0, 1].
        terminated: same shape, bool (see :func:`td_target`).

    Returns:
        y, same shape, detached.
    """
    _check_next(rewards, terminated, next_q1=next_q1, next_q2=next_q2)
    return td_target(rewards, torch.minimum(next_q1, next_q2), gamma=gamma, terminated=terminated)


def soft_q_target(
    rewards: Tensor,
    next_q1: Tensor,
    next_q2: Tensor,
    next_logprobs: Tensor,
    *,
    gamma: float,
    alpha: float,
    terminated: Tensor | None = None,
) -> Tensor:
    r"""SAC's soft (entropy-regularised) target (Haarnoja et al., 2018).

    .. math::
        y = r + \gamma \, (1 - \text{term}) \,
            \big[\min(Q'_1(s', a'), Q'_2(s', a')) - \alpha \log\pi(a' \mid s')\big],
        \qquad a' \sim \pi(\cdot \mid s')

    The next state's soft value adds the entropy bonus :math:`-\alpha\log\pi`
    the policy will collect there; a terminal state has soft value 0.

    Args:
        rewards: (B,) or (B, T) float.
        next_q1, next_q2: same shape, target critics at (s', a').
        next_logprobs: same shape, :math:`\log\pi(a' \mid s')` of the fresh sample.
        gamma: discount in [0, 1].
        alpha: temperature, >= 0.
        terminated: same shape, bool (see :func:`td_target`).

    Returns:
        y, same shape, detached.
    """
    _check_next(rewards, terminated, next_q1=next_q1, next_q2=next_q2, next_logprobs=next_logprobs)
    alpha = check_positive("alpha", alpha, allow_zero=True)
    soft_value = torch.minimum(next_q1, next_q2) - alpha * next_logprobs
    return td_target(rewards, soft_value, gamma=gamma, terminated=terminated)


def temperature_loss(log_alpha: Tensor, logprobs: Tensor, *, target_entropy: float) -> Tensor:
    r"""SAC's temperature loss: steers the policy entropy to ``target_entropy``.

    .. math:: L(\log\alpha) = -\log\alpha \cdot \mathbb{E}\big[\operatorname{sg}(\log\pi(a\mid s)
              + \bar{\mathcal H})\big]

    Its gradient :math:`-\mathbb{E}[\log\pi + \bar{\mathcal H}]` is negative
    (alpha grows) while the entropy :math:`-\mathbb{E}[\log\pi]` is below the
    target :math:`\bar{\mathcal H}` (usually ``-action_dim``), and positive
    (alpha shrinks) above it. Optimising :math:`\log\alpha` keeps alpha > 0.

    Args:
        log_alpha: scalar (0-d) float tensor with grad.
        logprobs: (B,) or (B, T) log-probs of fresh policy samples (detached here).
        target_entropy: the entropy target, nats (any finite float).

    Returns:
        Scalar loss.
    """
    check_tensor("log_alpha", log_alpha)
    if log_alpha.dim() != 0:
        raise ValueError(f"log_alpha must be a 0-d tensor, got shape {tuple(log_alpha.shape)}")
    check_tensor("logprobs", logprobs)
    if isinstance(target_entropy, bool) or not isinstance(target_entropy, (int, float)):
        raise TypeError(f"target_entropy must be a float, got {target_entropy!r}")
    if not math.isfinite(target_entropy):
        raise ValueError(f"target_entropy must be finite, got {target_entropy}")
    check_finite(None, log_alpha=log_alpha, logprobs=logprobs)
    return -(log_alpha * (logprobs.detach() + float(target_entropy))).mean()


def squashed_gaussian_log_prob(pre_tanh: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    r"""Log-density of :math:`a = \tanh(u)`, :math:`u \sim \mathcal N(\mu, \sigma^2)` per dimension.

    By the change of variables :math:`p_a(a) = p_u(u) \, |\det \partial a/\partial u|^{-1}`:

    .. math::
        \log \pi(a) = \sum_i \Big[\log\mathcal N(u_i; \mu_i, \sigma_i)
                      - \log\big(1 - \tanh^2 u_i\big)\Big]

    with the correction written as :math:`2(\log 2 - u - \operatorname{softplus}(-2u))`,
    exact and finite for any u (``1 - tanh(u)**2`` underflows to 0 for |u| > ~9).

    Args:
        pre_tanh: (..., A) the Gaussian sample u, before the tanh (with grad).
        mean, log_std: (..., A) the Gaussian's parameters, same shape as ``pre_tanh``.

    Returns:
        (...) log-probs, summed over the last (action) dimension.
    """
    check_tensor("pre_tanh", pre_tanh)
    check_tensor("mean", mean)
    check_tensor("log_std", log_std)
    check_same_shape("pre_tanh", pre_tanh, mean=mean, log_std=log_std)
    check_finite(None, pre_tanh=pre_tanh, mean=mean, log_std=log_std)
    z = (pre_tanh - mean) * torch.exp(-log_std)
    gaussian = -0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI
    log_det = 2.0 * (_LOG_2 - pre_tanh - torch.nn.functional.softplus(-2.0 * pre_tanh))
    return (gaussian - log_det).sum(-1)


@torch.no_grad()
def polyak_update(target: Iterable[Tensor], source: Iterable[Tensor], *, tau: float) -> None:
    r"""Polyak averaging of target-network parameters, in place.

    .. math:: \theta' \leftarrow \tau \, \theta + (1 - \tau) \, \theta'

    ``tau = 0`` leaves the target unchanged; ``tau = 1`` copies the source exactly.

    Args:
        target: tensors updated in place (target network parameters).
        source: tensors of the same shapes, in the same order (online network).
        tau: in [0, 1].
    """
    tau = check_unit_interval("tau", tau)
    target, source = list(target), list(source)
    if len(target) != len(source):
        raise ValueError(
            f"target has {len(target)} tensors but source has {len(source)}; "
            "pass the parameters of two networks of the same architecture"
        )
    for i, (t, s) in enumerate(zip(target, source)):
        check_tensor(f"target[{i}]", t)
        check_tensor(f"source[{i}]", s)
        check_same_shape(f"target[{i}]", t, **{f"source[{i}]": s})
    if target:
        # lerp computes t + tau * (s - t); at tau = 1 torch returns s exactly (tested)
        torch._foreach_lerp_(target, source, tau)
