"""Returns and advantages over (batch, time) sequences.

Conventions shared by both functions:

* Row ``b`` of every tensor is one stream of steps: one environment of a
  vectorised rollout, or one padded token sequence.
* ``mask[b, t]`` is True for real steps. Masked steps are skipped entirely:
  a recursion passes over them as if they were not there, so padding (left,
  right or in the middle) never changes the outputs at valid steps, and the
  outputs at masked steps are 0.
* ``terminated[b, t]``: the state reached after step ``t`` is terminal, its
  value is 0 and the recursion stops.
* ``truncated[b, t]``: the episode was cut after step ``t`` (a time limit).
  The recursion stops, but the target bootstraps from the value of the
  observation that followed (``next_values[b, t]``).
* The step after the last valid step of a row continues from
  ``bootstrap_value[b]`` (default 0, i.e. the row ends in a terminal state).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import (
    check_finite,
    check_flags,
    check_mask,
    check_same_shape,
    check_tensor,
    check_unit_interval,
)


def _check_bootstrap(bootstrap_value: Tensor | None, ref: Tensor) -> Tensor:
    if bootstrap_value is None:
        return ref.new_zeros(ref.shape[0])
    check_tensor("bootstrap_value", bootstrap_value, ndim=1)
    if bootstrap_value.shape[0] != ref.shape[0]:
        raise ValueError(
            f"bootstrap_value must have shape ({ref.shape[0]},) (one value per row), "
            f"got {tuple(bootstrap_value.shape)}"
        )
    check_finite(bootstrap_value=bootstrap_value)
    return bootstrap_value.to(ref.dtype)


def _reverse_scan(x: Tensor, decay: Tensor, init: Tensor, mask: Tensor) -> Tensor:
    """y_t = x_t + decay_t * y_{next valid t}, with y after the last valid step = init.

    Masked steps output 0 and leave the carried value untouched.
    """
    out = torch.zeros_like(x)
    carry = init
    for t in range(x.shape[1] - 1, -1, -1):
        y = x[:, t] + decay[:, t] * carry
        valid = mask[:, t]
        out[:, t] = torch.where(valid, y, torch.zeros_like(y))
        carry = torch.where(valid, y, carry)
    return out


def _next_valid(values: Tensor, mask: Tensor, fill: Tensor) -> Tensor:
    """For each t, the value at the next valid step of the row (``fill`` if none)."""
    out = torch.empty_like(values)
    carry = fill
    for t in range(values.shape[1] - 1, -1, -1):
        out[:, t] = carry
        carry = torch.where(mask[:, t], values[:, t], carry)
    return out


def discounted_returns(
    rewards: Tensor,
    gamma: float,
    *,
    dones: Tensor | None = None,
    bootstrap_value: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    r"""Reward-to-go with episode boundaries.

    .. math::
        G_t = r_t + \gamma \, (1 - d_t) \, G_{t+1}, \qquad
        G_{T} = \text{bootstrap\_value}

    where :math:`d_t` = ``dones[:, t]`` ends the episode after step t (no
    bootstrap across it) and :math:`t+1` means the next valid step.

    Args:
        rewards: (B, T) float rewards.
        gamma: discount in [0, 1].
        dones: (B, T) bool, True where an episode ends after step t.
        bootstrap_value: (B,) value carried in after the last valid step of
            each row (e.g. V(s_T) of an unfinished episode); default 0.
        mask: (B, T) bool, True at valid steps.

    Returns:
        (B, T) returns, 0 at masked steps.
    """
    check_tensor("rewards", rewards, ndim=2)
    gamma = check_unit_interval("gamma", gamma)
    mask = check_mask(mask, "rewards", rewards)
    dones = check_flags("dones", dones, "rewards", rewards)
    check_finite(mask, rewards=rewards)
    init = _check_bootstrap(bootstrap_value, rewards)
    decay = gamma * (~dones).to(rewards.dtype)
    return _reverse_scan(rewards, decay, init, mask)


def gae(
    rewards: Tensor,
    values: Tensor,
    *,
    gamma: float,
    lam: float,
    terminated: Tensor | None = None,
    truncated: Tensor | None = None,
    next_values: Tensor | None = None,
    bootstrap_value: Tensor | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Generalised advantage estimation (Schulman et al., 2016).

    .. math::
        \delta_t &= r_t + \gamma \, (1 - \text{term}_t) \, V(s'_t) - V(s_t) \\
        A_t &= \delta_t + \gamma \lambda \, (1 - \text{term}_t)(1 - \text{trunc}_t) \, A_{t+1} \\
        R_t &= A_t + V(s_t)

    :math:`V(s'_t)` is the value of the observation after step t: by default
    the value at the next valid step of the row (``bootstrap_value`` after
    the last one); pass ``next_values`` to give it explicitly, which is how a
    truncated step bootstraps from the value of its final observation.
    ``lam = 0`` gives one-step TD errors; ``lam = 1`` gives Monte-Carlo
    returns (bootstrapped at truncations) minus values.

    Args:
        rewards: (B, T) float.
        values: (B, T) float, V(s_t) (treated as constants).
        gamma, lam: in [0, 1].
        terminated: (B, T) bool, next state terminal (value 0, recursion stops).
        truncated: (B, T) bool, episode cut after t (bootstrap, recursion stops).
        next_values: (B, T) float, V(s'_t) for every step; required where
            ``truncated`` is used with the final observation's value.
        bootstrap_value: (B,) value after the last valid step; default 0.
        mask: (B, T) bool, True at valid steps.

    Returns:
        ``(advantages, returns)``, each (B, T), 0 at masked steps.
    """
    check_tensor("rewards", rewards, ndim=2)
    check_tensor("values", values, ndim=2)
    check_same_shape("rewards", rewards, values=values, next_values=next_values)
    gamma = check_unit_interval("gamma", gamma)
    lam = check_unit_interval("lam", lam)
    mask = check_mask(mask, "rewards", rewards)
    terminated = check_flags("terminated", terminated, "rewards", rewards)
    truncated = check_flags("truncated", truncated, "rewards", rewards)
    if next_values is not None:
        check_tensor("next_values", next_values, ndim=2)
        if bootstrap_value is not None:
            raise ValueError(
                "give next_values or bootstrap_value, not both: next_values already holds the "
                "value after every step, including the last one"
            )
    check_finite(mask, rewards=rewards, values=values, next_values=next_values)
    init = _check_bootstrap(bootstrap_value, rewards)

    values = values.detach()
    if next_values is None and bool(truncated.any()):
        raise ValueError(
            "truncated steps bootstrap from the value of their final observation: "
            "pass next_values (B, T) together with truncated"
        )
    if next_values is None:
        next_values = _next_valid(values, mask, init)
    next_values = next_values.detach()
    alive = (~terminated).to(rewards.dtype)
    deltas = rewards + gamma * alive * next_values - values
    continues = alive * (~truncated).to(rewards.dtype)
    advantages = _reverse_scan(deltas, gamma * lam * continues, torch.zeros_like(init), mask)
    returns = torch.where(mask, advantages + values, torch.zeros_like(values))
    return advantages, returns
