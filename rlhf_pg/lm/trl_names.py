"""TRL's names for :class:`rlhf_pg.lm.PPOConfig` settings (GRPOConfig / RLOOConfig, and the
two PPOConfigs TRL had before it removed its PPOTrainer), with the conversions where TRL's
convention differs, and the TRL settings we refuse with the reason.

A converter gets TRL's value and ``given``: every setting of the config under our names,
defaults included, so a conversion may depend on another setting
(``per_device_train_batch_size`` on ``samples_per_prompt``). docs/migrating-from-trl.md
tabulates these.
"""

from __future__ import annotations

from typing import Any

from ..core import AGGREGATION_MODES
from ..utils.config import TrlName

LR_SCHEDULES = ("constant", "linear")  # PPOConfig.lr_schedule

_LOSS_TYPES = {  # TRL GRPOConfig.loss_type -> our loss_aggregation
    "grpo": "seq-mean-token-mean",
    "dr_grpo": "seq-mean-token-sum",
    "dapo": "token-mean",
    "bnpo": "token-mean",
}


def _loss_type(value: Any, given: dict[str, Any]) -> str:
    if value in AGGREGATION_MODES:  # already our name
        return value
    if value not in _LOSS_TYPES:
        raise ValueError(
            f"no loss aggregation of ours matches; valid: {', '.join(_LOSS_TYPES)} "
            f"(or ours: {', '.join(AGGREGATION_MODES)})"
        )
    return _LOSS_TYPES[value]


def _scale_rewards(value: Any, given: dict[str, Any]) -> bool:
    scale = {"group": True, True: True, "none": False, False: False}
    if value not in scale:
        raise ValueError("valid: group, none, true or false (batch-std scaling is not supported)")
    return scale[value]


def _lr_scheduler_type(value: Any, given: dict[str, Any]) -> str:
    if value not in LR_SCHEDULES:
        raise ValueError(f"valid: {', '.join(LR_SCHEDULES)}")
    return value


def _stop_token_id(value: Any, given: dict[str, Any]) -> list[int]:
    return [] if value is None else [value] if isinstance(value, int) else value


def _per_device_train_batch_size(value: Any, given: dict[str, Any]) -> int:
    """TRL counts completions per process in one micro-batch; we count prompts per process
    per step: batch_size * samples_per_prompt = micro-batch * accumulation * minibatches."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be an integer >= 1 (completions per process per micro-batch)")
    k = given["samples_per_prompt"]
    chunks = given["gradient_accumulation_steps"]
    chunks *= given["num_minibatches"]
    if (value * chunks) % k:
        raise ValueError(
            f"{value} completions per micro-batch x {chunks} micro-batches per step is not a "
            f"multiple of num_generations={k}; batch_size (prompts per step) would not be whole"
        )
    return value * chunks // k


def _mini_batch_size(value: Any, given: dict[str, Any]) -> int:
    """TRL's first PPOConfig: ``mini_batch_size`` completions per micro-batch -> how many
    minibatches one step's completions make."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be an integer >= 1 (completions per micro-batch)")
    rows = given["batch_size"]
    rows *= given["samples_per_prompt"]
    per_minibatch = value * given["gradient_accumulation_steps"]
    if rows % per_minibatch:
        raise ValueError(
            f"{rows} completions per step do not split into minibatches of {per_minibatch}"
        )
    return rows // per_minibatch


def _adap_kl_ctrl(value: Any, given: dict[str, Any]) -> str:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return "adaptive" if value else "fixed"


TRL_NAMES: dict[str, TrlName] = {
    "num_generations": TrlName("samples_per_prompt", note="same meaning"),
    "max_completion_length": TrlName("max_new_tokens", note="same meaning"),
    "response_length": TrlName("max_new_tokens", note="TRL's old PPOConfig"),
    "beta": TrlName(
        "kl_coef",
        note="same coefficient; where the KL goes is kl_penalty (GRPOTrainer: in the loss "
        "with k3, RLOOTrainer: in the reward with k1)",
    ),
    "epsilon": TrlName("clip_eps", note="same meaning"),
    "cliprange": TrlName("clip_eps", note="TRL's old PPOConfig"),
    "epsilon_high": TrlName("clip_eps_high", note="same meaning (asymmetric clip, DAPO)"),
    "cliprange_value": TrlName("clip_eps_value", note="TRL's old PPOConfig"),
    "num_iterations": TrlName("update_epochs", note="same meaning"),
    "num_ppo_epochs": TrlName("update_epochs", note="TRL's old PPOConfig"),
    "num_mini_batches": TrlName("num_minibatches", note="TRL's old PPOConfig"),
    "per_device_train_batch_size": TrlName(
        "batch_size",
        _per_device_train_batch_size,
        note="TRL: completions per micro-batch; ours: prompts per step "
        "(= value x gradient_accumulation_steps x num_minibatches / samples_per_prompt)",
    ),
    "save_steps": TrlName("save_every", note="ours counts PPO steps, TRL optimizer steps"),
    "use_peft": TrlName("use_lora", note="LoRA settings keep TRL's names (lora_r, lora_alpha)"),
    "loss_type": TrlName(
        "loss_aggregation",
        _loss_type,
        note="grpo, dr_grpo, dapo, bnpo -> seq-mean-token-mean, seq-mean-token-sum, "
        "token-mean, token-mean",
    ),
    "scale_rewards": TrlName("grpo_scale_by_std", _scale_rewards, note="group/none -> true/false"),
    "lr_scheduler_type": TrlName("lr_schedule", _lr_scheduler_type, note="constant or linear"),
    "adam_epsilon": TrlName("adam_eps", note="same meaning"),
    "stop_token_id": TrlName("stop_token_ids", _stop_token_id, note="one id -> a list"),
    # TRL's first PPOConfig (with AutoModelForCausalLMWithValueHead)
    "init_kl_coef": TrlName("kl_coef", note="TRL's first PPOConfig"),
    "adap_kl_ctrl": TrlName("kl_controller", _adap_kl_ctrl, note="true/false -> adaptive/fixed"),
    "target": TrlName("kl_target", note="TRL's first PPOConfig"),
    "horizon": TrlName("kl_horizon", note="TRL's first PPOConfig"),
    "mini_batch_size": TrlName(
        "num_minibatches",
        _mini_batch_size,
        note="completions per micro-batch -> minibatches per step",
    ),
}
TRL_UNSUPPORTED: dict[str, str] = {
    "use_vllm": "generation runs in the trainer's own sampler (rlhf_pg.hf.sampling)",
    "steps_per_generation": "one rollout is used by update_epochs x num_minibatches steps; "
    "set those instead",
    "generation_batch_size": "set batch_size (prompts per step) and samples_per_prompt",
    "importance_sampling_level": "ratios are per token",
    "total_episodes": "set max_steps (rollout + update steps)",
    "num_train_epochs": "set max_steps (rollout + update steps)",
    "logging_steps": "every step is logged (metrics.jsonl and report_to)",
    "reward_weights": "pass reward=[(weight, fn), ...] to PPOTrainer, or reward_fn_weight / "
    "reward_model_weight to recipes/ppo.py",
    "mask_truncated_completions": "use missing_eos_penalty to score completions without a "
    "stop token down",
    # TRL 1.12 PPO (default False): divides the per-token rewards (KL penalty + score) by their
    # std without centring them; ours has no such step
    "whiten_rewards": "TRL scales its per-token rewards by their std; there is no such step "
    "here (its default, false, is ours): drop it, or whiten the sequence scores with "
    "normalize_scores (centred, before the KL penalty: not the same)",
}
