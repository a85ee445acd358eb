"""Names of the per-update metrics, in the language-model trainer's style.

Quantities both trainers log carry the same key: ``loss/policy``,
``loss/value``, ``loss/entropy`` (mean policy entropy over the update's batch,
the term ``entropy_coef`` multiplies), ``policy/approx_kl``,
``policy/clipfrac``, ``value/explained_variance``, ``grad_norm``, ``lr``,
``ppo/epochs``. The rest are grouped by what they describe: ``train/``
(training episodes), ``eval/`` (deterministic evaluation), ``time/`` and
``throughput/`` (the machine, not the learning), and one group per algorithm
for its own diagnostics (``ppo/clip_eps``, ``trpo/step_accepted``,
``a3c/worker_updates``, ...).

Runs written before the renaming used flat names; ``upgrade_row`` reads them.
"""

from __future__ import annotations

from typing import Any

TRAIN_RETURN = "train/episode_return"
EVAL_RETURN = "eval/return_mean"
EVAL_STD = "eval/return_std"
ELAPSED = "time/elapsed"  # seconds of collection and updates so far (evaluation excluded)
STEPS_PER_S = "throughput/env_steps_per_s"
TIMING_PREFIXES = ("time/", "throughput/")

# flat names used before the renaming -> current names
LEGACY_METRICS = {
    "time": ELAPSED,
    "sps": STEPS_PER_S,
    "eval_time": "time/eval",
    "train_time_s": ELAPSED,  # compare records' curve points
    "policy_loss": "loss/policy",
    "value_loss": "loss/value",
    "entropy": "loss/entropy",
    "approx_kl": "policy/approx_kl",
    "clip_frac": "policy/clipfrac",
    "explained_var": "value/explained_variance",
    "epochs": "ppo/epochs",
    "clip_coef": "ppo/clip_eps",
    "episodes": "reinforce/episodes",
    "kl": "policy/kl",
    "step_accepted": "trpo/step_accepted",
    "step_frac": "trpo/step_frac",
    "line_search_tries": "trpo/line_search_tries",
    "cg_residual": "trpo/cg_residual",
    "policy_grad_norm": "trpo/policy_grad_norm",
    "worker_updates": "a3c/worker_updates",
    "worker_updates_min_total": "a3c/worker_updates_min_total",
    "train_return": TRAIN_RETURN,
    "train_length": "train/episode_length",
    "train_episodes": "train/episodes",
    "eval_return": EVAL_RETURN,
    "eval_std": EVAL_STD,
}


def is_timing(key: str) -> bool:
    """Whether a metric measures the machine (excluded from same-seed comparisons)."""
    return key.startswith(TIMING_PREFIXES)


def upgrade_row(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row (or curve point) with any old flat names replaced by the current ones."""
    return {LEGACY_METRICS.get(k, k): v for k, v in row.items()}
