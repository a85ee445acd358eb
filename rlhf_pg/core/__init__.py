"""The policy-gradient core: pure torch functions over (batch, time) tensors with a mask.

Nothing here knows about environments or language models; the gymnasium
agents in ``classic_control`` and the token-level trainer in ``rlhf_pg.lm``
both call these functions.
"""

from ._checks import finite_checks, set_finite_checks
from .baselines import batch_mean_baseline, grpo_advantages, rloo_advantages
from .gsde import gsde_log_std, gsde_noise
from .importance import effective_sample_size, step_ratios, trajectory_log_weights
from .kl import (
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    kl_k1,
    kl_k2,
    kl_k3,
)
from .losses import (
    AGGREGATION_MODES,
    KLPenaltyLoss,
    PPOLoss,
    aggregate_loss,
    entropy,
    ppo_clip_loss,
    ppo_kl_penalty_loss,
    reinforce_loss,
    value_loss,
)
from .offpolicy import (
    clipped_double_q_target,
    polyak_update,
    soft_q_target,
    squashed_gaussian_log_prob,
    td_target,
    temperature_loss,
)
from .returns import discounted_returns, gae
from .stats import explained_variance, masked_mean, masked_var, whiten

__all__ = [
    "AGGREGATION_MODES",
    "KL_ESTIMATORS",
    "AdaptiveKLController",
    "FixedKLController",
    "KLPenaltyLoss",
    "PPOLoss",
    "aggregate_loss",
    "batch_mean_baseline",
    "clipped_double_q_target",
    "discounted_returns",
    "effective_sample_size",
    "entropy",
    "explained_variance",
    "finite_checks",
    "gae",
    "gsde_log_std",
    "gsde_noise",
    "grpo_advantages",
    "kl_estimate",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "masked_mean",
    "masked_var",
    "polyak_update",
    "ppo_clip_loss",
    "ppo_kl_penalty_loss",
    "reinforce_loss",
    "rloo_advantages",
    "set_finite_checks",
    "soft_q_target",
    "squashed_gaussian_log_prob",
    "td_target",
    "temperature_loss",
    "step_ratios",
    "trajectory_log_weights",
    "value_loss",
    "whiten",
]
