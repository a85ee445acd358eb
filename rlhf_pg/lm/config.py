"""All hyperparameters of the token-level trainer in one dataclass.

``PPOConfig`` works with ``transformers.HfArgumentParser`` (every field is a
plain scalar, string or list with a default and a help text) and validates
itself on construction, so a bad value fails with one line naming it before
any model is touched.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from ..core import AGGREGATION_MODES, KL_ESTIMATORS
from ..utils.config import ConfigError, TrlName, check_types, config_from_dict, with_aliases
from .trl_names import LR_SCHEDULES, TRL_NAMES, TRL_UNSUPPORTED

ESTIMATORS = ("ppo", "reinforce", "rloo", "grpo")
KL_PENALTY_MODES = ("reward", "loss", "none")
KL_CONTROLLERS = ("fixed", "adaptive")
PROMPT_TRUNCATION = ("error", "left")
TRACKERS = ("tensorboard", "wandb", "trackio")  # what report_to may name, besides none / all
AT_LEAST_ONE = (
    "samples_per_prompt",
    "batch_size",
    "update_epochs",
    "num_minibatches",
    "gradient_accumulation_steps",
    "max_steps",
    "max_new_tokens",
    "lora_r",
)
NON_NEGATIVE = (
    "weight_decay",
    "max_grad_norm",
    "target_kl",
    "clip_eps_value",
    "vf_coef",
    "entropy_coef",
    "kl_coef",
    "missing_eos_penalty",
    "clip_eps_high",
    "score_clip",
    "lora_dropout",
)


def normalize_report_to(value: str | list[str]) -> list[str]:
    """``report_to`` as transformers reads it: a name or a list; ``"none"`` (or ``[]``) means
    no tracker, ``"all"`` every installed one (expanded when the trainer starts)."""
    names = [value] if isinstance(value, str) else list(value)
    return [n for n in names if n != "none"]


def check_report_to(names: list[str], owner: str = "report_to") -> None:
    """One line naming a tracker we do not support."""
    for name in names:
        if name not in (*TRACKERS, "all"):
            raise ConfigError(
                f"{owner}={name!r} is not valid; choose from {', '.join(TRACKERS)}, all or none"
            )


def _help(text: str, default: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": text})
    return field(default=default, metadata={"help": text})


@with_aliases
@dataclass
class PPOConfig:
    """Hyperparameters of :class:`rlhf_pg.lm.PPOTrainer` (PPO and the critic-free estimators).

    Batch sizes are per process: each of N processes generates
    ``batch_size * samples_per_prompt`` completions per step, so the global
    batch is N times that.

    Names are shared with ``classic_control`` where the meaning is the same
    (``learning_rate``, ``gae_lambda``, ``clip_eps``, ``update_epochs``,
    ``entropy_coef``); the old names in ``ALIASES`` still work, with a notice. TRL's
    names (``TRL_NAMES``: ``num_generations``, ``beta``, ``epsilon``, ``loss_type``, ...)
    work without one; docs/migrating-from-trl.md maps them.
    """

    ALIASES: ClassVar[dict[str, str]] = {
        "lam": "gae_lambda",
        "ppo_epochs": "update_epochs",
        "total_steps": "max_steps",
        "cpu": "use_cpu",
        "log_with": "report_to",
    }
    TRL_NAMES: ClassVar[dict[str, TrlName]] = TRL_NAMES
    TRL_UNSUPPORTED: ClassVar[dict[str, str]] = TRL_UNSUPPORTED

    # --- estimator -------------------------------------------------------
    estimator: str = _help(
        "advantage estimator: ppo (value head + GAE), reinforce (batch-mean baseline), "
        "rloo (leave-one-out), grpo (group mean/std)",
        "ppo",
    )
    samples_per_prompt: int = _help("completions per prompt (k); rloo/grpo need k >= 2", 1)
    grpo_scale_by_std: bool = _help("grpo: divide by the group std (False = Dr. GRPO)", True)

    # --- batch and optimisation -------------------------------------------
    batch_size: int = _help("prompts per step per process", 16)
    update_epochs: int = _help("passes over each rollout", 4)
    num_minibatches: int = _help("minibatches per epoch (optimizer steps per epoch)", 1)
    gradient_accumulation_steps: int = _help("micro-batches per minibatch", 1)
    learning_rate: float = _help("Adam learning rate", 1e-5)
    adam_eps: float = _help("Adam epsilon", 1e-5)
    weight_decay: float = _help("AdamW weight decay", 0.0)
    lr_schedule: str = _help("constant or linear decay to 0 over max_steps", "constant")
    max_grad_norm: float = _help("global grad-norm clip; 0 disables", 1.0)
    max_steps: int = _help("PPO steps (rollout + update) run by train()", 100)
    target_kl: float = _help("stop the epoch loop when approx-KL exceeds this; 0 disables", 0.0)

    # --- PPO losses ----------------------------------------------------------
    gamma: float = _help("discount over tokens", 1.0)
    gae_lambda: float = _help("GAE lambda over tokens", 0.95)
    clip_eps: float = _help("PPO ratio clip range", 0.2)
    clip_eps_high: float = _help(
        "upper ratio clip (1 + clip_eps_high) when asymmetric (DAPO); 0 = clip_eps", 0.0
    )
    clip_eps_value: float = _help("value clip range around rollout values; 0 disables", 0.2)
    vf_coef: float = _help("value-loss coefficient", 0.1)
    entropy_coef: float = _help("entropy bonus coefficient", 0.0)
    loss_aggregation: str = _help(
        "token-mean, seq-mean-token-mean or seq-mean-token-sum", "token-mean"
    )
    whiten_advantages: bool = _help("ppo: whiten advantages over the global batch", True)
    value_head_detach: bool = _help(
        "ppo with the value head on the policy trunk: the head reads the last hidden state "
        "detached, so the value loss trains the head only and the policy's weights see the "
        "policy loss alone (no effect with a separate critic_model)",
        False,
    )

    # --- KL to the reference ----------------------------------------------
    kl_penalty: str = _help("where the KL goes: reward (classic RLHF), loss (GRPO), none", "reward")
    kl_estimator: str = _help("k1, k2 or k3", "k1")
    kl_controller: str = _help("fixed or adaptive KL coefficient", "fixed")
    kl_coef: float = _help(
        "(initial) KL coefficient beta; 0 with the fixed controller skips the reference pass "
        "(the KL is then not measured: kl/* metrics NaN)",
        0.05,
    )
    kl_target: float = _help("adaptive controller: target KL per sequence (nats)", 6.0)
    kl_horizon: float = _help("adaptive controller: horizon in samples", 10000.0)

    # --- rewards --------------------------------------------------------------
    missing_eos_penalty: float = _help(
        "subtracted from the score of responses without a stop token", 0.0
    )
    normalize_scores: bool = _help("whiten sequence scores over the global batch", False)
    score_clip: float = _help("clip scores to [-c, c] after normalisation; 0 disables", 0.0)

    # --- generation -----------------------------------------------------------
    max_new_tokens: int = _help("response length limit", 32)
    temperature: float = _help("sampling temperature (log-probs use logits / T)", 1.0)
    top_k: int = _help(
        "must stay 0 for training: rollouts sample the full softmax(logits / T) that the "
        "log-probs, ratio and KL use (top-k is for PPOTrainer.complete(top_k=...))",
        0,
    )
    top_p: float = _help("must stay 1.0 for training, as top_k (complete(top_p=...))", 1.0)
    sampling_logprobs: bool = _help(
        "critic-free estimators in float32: keep the sampling pass's log-probs as the "
        "rollout's old log-probs instead of a second forward pass (faster; equal to it up to "
        "float rounding, ~1e-6, so the step-0 KL to an identical reference is ~1e-7, not "
        "exactly 0). Off by default: the default rollout log-probs are bit-exact",
        False,
    )
    generation_threads: int = _help(
        "torch threads while decoding; 0 = the process's own count. On a CPU the per-token "
        "ops of a small model are too small to split, and one thread can decode faster than "
        "two (the rest of the step keeps the process's count); the same computation, up to "
        "the float rounding of how the threads split it",
        0,
    )
    stop_token_ids: list[int] = _help("tokens that end a response; empty = the EOS token", [])
    max_prompt_length: int = _help("longest prompt in tokens; 0 = context minus max_new_tokens", 0)
    prompt_truncation: str = _help("prompts over the limit: error or left (keep the end)", "error")

    # --- model -----------------------------------------------------------------
    use_lora: bool = _help(
        "train LoRA adapters (peft); the reference is the adapter-free base", False
    )
    lora_r: int = _help("LoRA rank", 8)
    lora_alpha: float = _help("LoRA alpha", 16.0)
    lora_dropout: float = _help("LoRA dropout (dropout is otherwise disabled)", 0.0)
    lora_target_modules: list[str] = _help("module names to adapt; empty = peft default", [])
    fused_gelu: bool = _help(
        "run GPT-2's tanh-GELU (gelu_new) with torch's fused kernel: same function, faster", True
    )
    gradient_checkpointing: bool = _help("recompute activations in backward", False)
    bf16: bool = _help("bf16 mixed precision via accelerate", False)
    use_cpu: bool = _help("force CPU even when a GPU is present", False)

    # --- bookkeeping ---------------------------------------------------------
    seed: int = _help("random seed (each process adds its rank)", 0)
    output_dir: str = _help(
        "where metrics.jsonl, trackers and checkpoints go (one writer at a time); empty = none",
        "",
    )
    overwrite_output_dir: bool = _help(
        "a new run in an output_dir holding metrics.jsonl or checkpoints deletes them; "
        "without it such a run refuses to start (resume with load_checkpoint instead)",
        False,
    )
    report_to: str | list[str] = _help(
        "trackers (accelerate): tensorboard, wandb, trackio, all or none; several allowed; "
        "empty = none",
        [],
    )
    save_every: int = _help("checkpoint every N steps in train(); 0 = only at the end", 0)
    progress_bar: bool = _help("tqdm progress bar on the main process", True)

    def __post_init__(self) -> None:
        self.stop_token_ids = list(self.stop_token_ids)
        self.lora_target_modules = list(self.lora_target_modules)
        if isinstance(self.report_to, (str, list)):
            self.report_to = normalize_report_to(self.report_to)
        check_types(self)  # a value of the wrong type: one line naming the field
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"PPOConfig: {f.name}={value} must be a finite number")
        self._check_choices()
        self._check_ranges()
        self._check_batch_split()

    def _check_choices(self) -> None:
        _choice("estimator", self.estimator, ESTIMATORS)
        _choice("kl_penalty", self.kl_penalty, KL_PENALTY_MODES)
        _choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        _choice("kl_controller", self.kl_controller, KL_CONTROLLERS)
        _choice("loss_aggregation", self.loss_aggregation, AGGREGATION_MODES)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("prompt_truncation", self.prompt_truncation, PROMPT_TRUNCATION)
        check_report_to(self.report_to)

    def _check_ranges(self) -> None:
        for name in AT_LEAST_ONE:
            _at_least(name, getattr(self, name), 1)
        for name in ("top_k", "max_prompt_length", "save_every", "generation_threads"):
            _at_least(name, getattr(self, name), 0)
        for name in ("learning_rate", "temperature", "adam_eps", "kl_target", "kl_horizon"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in NON_NEGATIVE:
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.top_k != 0 or self.top_p != 1.0:
            raise ConfigError(
                f"top_k={self.top_k}, top_p={self.top_p}: training rollouts must sample the full "
                "softmax(logits / temperature), which the log-probs, ratio and KL are computed "
                "under; keep top_k=0 and top_p=1.0 (truncated sampling is for "
                "PPOTrainer.complete(top_k=..., top_p=...))"
            )
        if self.kl_penalty == "loss" and self.kl_estimator == "k1":
            raise ConfigError(
                "kl_penalty='loss' with kl_estimator='k1': the gradient of k1 = logp - ref_logp "
                "does not depend on the reference (zero in expectation on-policy); use "
                "kl_estimator='k2' (gradient of KL(pi || ref)) or 'k3' (gradient of KL(ref || pi))"
            )
        if not self.clip_eps > 0:
            raise ConfigError(f"clip_eps must be > 0, got {self.clip_eps}")
        if self.save_every and not self.output_dir:
            raise ConfigError(
                f"save_every={self.save_every} needs an output_dir for the checkpoints"
            )

    def _check_batch_split(self) -> None:
        if self.estimator in ("rloo", "grpo") and self.samples_per_prompt < 2:
            raise ConfigError(
                f"estimator={self.estimator!r} compares samples of the same prompt and needs "
                f"samples_per_prompt >= 2, got {self.samples_per_prompt}"
            )
        rows = self.batch_size * self.samples_per_prompt
        chunks = self.num_minibatches * self.gradient_accumulation_steps
        if rows % chunks:
            raise ConfigError(
                f"batch_size * samples_per_prompt = {rows} completions per process cannot be split "
                f"into num_minibatches * gradient_accumulation_steps = {chunks} equal parts"
            )

    @property
    def uses_critic(self) -> bool:
        return self.estimator == "ppo"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOConfig:
        return config_from_dict(cls, data, "PPOConfig")


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(valid)}")


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
