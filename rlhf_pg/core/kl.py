"""KL estimators between two policies from sampled log-probs, and KL-coefficient controllers."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ._checks import (
    check_finite,
    check_optional_mask,
    check_positive,
    check_same_shape,
    check_tensor,
)

KLEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")


def _check_pair(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor | None) -> Tensor | None:
    check_tensor("logprobs", logprobs)
    check_tensor("ref_logprobs", ref_logprobs)
    check_same_shape("logprobs", logprobs, ref_logprobs=ref_logprobs)
    return check_optional_mask(mask, "logprobs", logprobs)


def _masked(kl: Tensor, mask: Tensor | None) -> Tensor:
    # torch.where, not a product: NaN or inf padding must not leak into values or gradients
    return kl if mask is None else torch.where(mask, kl, torch.zeros_like(kl))


def kl_k1(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Unbiased, high-variance estimate of KL(pi || ref) per sample.

    .. math:: k_1 = \log\pi(x) - \log\pi_{\text{ref}}(x), \quad x \sim \pi

    Can be negative for single samples. As a loss its gradient
    :math:`\nabla\log\pi(x)` does not involve the reference and is zero in expectation
    on-policy, so use it as a reward penalty, not as a loss term.

    Args:
        logprobs, ref_logprobs: (...) log-probs of the same sampled actions under the
            policy and the reference (e.g. (B, T) tokens).
        mask: optional bool (...) of the same shape; 0 where False.

    Returns:
        (...) per-sample estimates.
    """
    mask = _check_pair(logprobs, ref_logprobs, mask)
    return _masked(logprobs - ref_logprobs, mask)


def kl_k2(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Biased, low-variance, non-negative estimate of KL(pi || ref).

    .. math:: k_2 = \tfrac12 (\log\pi(x) - \log\pi_{\text{ref}}(x))^2, \quad x \sim \pi

    As a loss on on-policy samples (not differentiated through the sampling),
    :math:`\mathbb{E}_\pi[\nabla k_2] = \nabla \mathrm{KL}(\pi \,\|\, \pi_{\text{ref}})`:
    the right estimator for a KL loss term. Shapes as :func:`kl_k1`.
    """
    mask = _check_pair(logprobs, ref_logprobs, mask)
    return _masked(0.5 * (logprobs - ref_logprobs) ** 2, mask)


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Unbiased, low-variance, non-negative estimate of KL(pi || ref).

    .. math:: k_3 = (r - 1) - \log r, \qquad r = \frac{\pi_{\text{ref}}(x)}{\pi(x)}, \quad x \sim \pi

    Its value estimates the reverse KL, but as a loss on on-policy samples its expected
    gradient is that of the FORWARD KL:
    :math:`\mathbb{E}_\pi[\nabla k_3] = \nabla \mathrm{KL}(\pi_{\text{ref}} \,\|\, \pi)`
    (GRPO's choice). Shapes as :func:`kl_k1`.
    """
    mask = _check_pair(logprobs, ref_logprobs, mask)
    log_r = ref_logprobs - logprobs
    return _masked(torch.expm1(log_r) - log_r, mask)


_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_estimate(
    logprobs: Tensor,
    ref_logprobs: Tensor,
    estimator: KLEstimator = "k1",
    mask: Tensor | None = None,
) -> Tensor:
    """Per-element KL estimate by name (``"k1"``, ``"k2"`` or ``"k3"``), 0 where ``mask`` is
    False; see :func:`kl_k1` etc. for shapes and for which gradient each one gives."""
    if estimator not in _ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; valid: {', '.join(KL_ESTIMATORS)}")
    return _ESTIMATORS[estimator](logprobs, ref_logprobs, mask)


class FixedKLController:
    r"""A constant KL coefficient :math:`\beta` (``kl_coef``)."""

    def __init__(self, kl_coef: float) -> None:
        self.kl_coef = check_positive("kl_coef", kl_coef, allow_zero=True)

    @property
    def value(self) -> float:
        """Deprecated name of :attr:`kl_coef`."""
        return self.kl_coef

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.kl_coef

    def state_dict(self) -> dict:
        return {"kl_coef": self.kl_coef}

    def load_state_dict(self, state: dict) -> None:
        self.kl_coef = float(state.get("kl_coef", state.get("value")))


class AdaptiveKLController(FixedKLController):
    r"""Proportional controller that steers the observed KL towards a target.

    After each batch of ``n_steps`` samples with observed KL :math:`\mathrm{KL}`:

    .. math::
        e = \operatorname{clip}\Big(\frac{\mathrm{KL}}{\mathrm{KL}_{\text{target}}} - 1,\,
        -0.2,\, 0.2\Big), \qquad
        \beta \leftarrow \beta \Big(1 + e \, \frac{n_{\text{steps}}}{H}\Big)

    (Ziegler et al., 2019), so :math:`\beta` (``kl_coef``, starting from the given value)
    grows when KL overshoots the target and shrinks when it undershoots, at a rate set by
    the horizon H.
    """

    def __init__(self, kl_coef: float, target: float, horizon: float) -> None:
        self.kl_coef = check_positive("kl_coef", kl_coef)
        self.target = check_positive("target", target)
        self.horizon = check_positive("horizon", horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        current_kl = float(current_kl)
        check_finite(current_kl=torch.tensor(current_kl))
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.kl_coef *= 1.0 + error * n_steps / self.horizon
        return self.kl_coef

    def state_dict(self) -> dict:
        return {"kl_coef": self.kl_coef, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.target = float(state["target"])
        self.horizon = float(state["horizon"])
