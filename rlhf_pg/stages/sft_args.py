"""The settings of an SFT run: ``SFTArgs`` (recipe YAML keys and CLI flags; TRL's
``SFTConfig`` / ``ScriptArguments`` names are accepted), where its model is saved
(:func:`sft_output_dir`) and what it trains on (:func:`describe_data`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..lm.config import check_report_to, normalize_report_to
from ..utils.cache import config_hash, default_cache_root
from ..utils.config import TrlName, check_types, require, require_lr_scheduler, with_aliases

# Fields that choose where or how a run happens, not what it produces.
_NOT_IN_KEY = (
    "output_dir",
    "cache_dir",
    "reuse_cache",
    "num_threads",
    "log_every",
    "progress",
    "report_to",
)
# Our loop's schedule: linear warm-up, then cosine decay to 10% of the learning rate.
OUR_SCHEDULE = "cosine_with_min_lr"
MIN_LR_RATE = 0.1
# SFTTrainer-only knobs, and the values that leave them off (our loop has no such thing).
DATASET_ONLY = {"packing": False, "completion_only_loss": None, "assistant_only_loss": False}


def mixed_precision_flag(kind: str):
    """TRL's ``bf16`` / ``fp16`` booleans -> our ``mixed_precision``."""

    def convert(value: Any, given: dict[str, Any]) -> str:
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return kind if value else "no"

    return convert


@with_aliases
@dataclass
class SFTArgs:
    """Hyperparameters of one SFT run (recipe YAML keys and CLI flags).

    ``max_steps`` counts optimizer steps, as :attr:`rlhf_pg.lm.PPOConfig.max_steps` does
    (``num_train_epochs``, when set, replaces it); the old name ``num_steps`` still works,
    with a notice. TRL's ``SFTConfig`` names are accepted (``TRL_NAMES``).
    """

    ALIASES: ClassVar[dict[str, str]] = {"num_steps": "max_steps"}
    TRL_NAMES: ClassVar[dict[str, TrlName]] = {
        "per_device_train_batch_size": TrlName("batch_size", note="same meaning"),
        "dataset_text_field": TrlName("text_column", note="same meaning"),
        "dataset_train_split": TrlName("dataset_split", note="same meaning"),
        "logging_steps": TrlName("log_every", note="same meaning"),
        "bf16": TrlName("mixed_precision", mixed_precision_flag("bf16"), note="true -> bf16"),
        "fp16": TrlName("mixed_precision", mixed_precision_flag("fp16"), note="true -> fp16"),
        "activation_checkpointing": TrlName("gradient_checkpointing", note="same meaning"),
    }

    task: Literal["sentiment", "arithmetic", "chat_arithmetic", "dataset"] = field(
        default="sentiment",
        metadata={
            "help": "what to train on: the generated reviews, addition problems (plain, or "
            "as conversations through the chat template), or a dataset"
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "model to start from (folder or hub name); unset: a fresh model_type "
            "sized by n_layer/n_head/n_embd"
        },
    )
    model_type: Literal["gpt2", "qwen2"] = field(
        default="gpt2",
        metadata={
            "help": "fresh model: gpt2, or qwen2 (n_head // 2 key-value heads, n_head if odd)"
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "tokenizer; unset: the model's, or a byte-level BPE trained on the data"},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "task dataset: hub name, or local folder / json / jsonl / parquet file"},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "task dataset: the hub dataset's configuration (subset)"}
    )
    dataset_split: str = field(
        default="train",
        metadata={"help": "task dataset: split to train on (TRL: dataset_train_split)"},
    )
    text_column: str = field(
        default="text", metadata={"help": "task dataset: the text column (TRL: dataset_text_field)"}
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "task dataset: use at most this many rows"}
    )
    corpus_size: int = field(
        default=20000, metadata={"help": "generated tasks: texts in the corpus"}
    )
    corpus_seed: int = field(default=0, metadata={"help": "generated tasks: seed of the corpus"})
    error_rate: float = field(
        default=0.3, metadata={"help": "arithmetic: share of wrong answers in the SFT corpus"}
    )
    carry_slip: float = field(
        default=0.6,
        metadata={"help": "chat_arithmetic: how often the tutor forgets a carry (17 + 5 -> 12)"},
    )
    max_operand: int = field(default=49, metadata={"help": "arithmetic: largest operand"})
    held_out_fraction: float = field(
        default=0.2, metadata={"help": "arithmetic: share of problems kept out of training"}
    )
    vocab_size: int = field(
        default=1024, metadata={"help": "size of the BPE trained when no tokenizer is given"}
    )
    n_layer: int = field(default=4, metadata={"help": "fresh GPT-2: layers"})
    n_head: int = field(default=4, metadata={"help": "fresh GPT-2: attention heads"})
    n_embd: int = field(default=128, metadata={"help": "fresh GPT-2: width"})
    n_positions: int = field(default=128, metadata={"help": "fresh GPT-2: context length"})
    max_length: int = field(default=64, metadata={"help": "longest training sequence in tokens"})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    lr_scheduler_type: str = field(
        default=OUR_SCHEDULE,
        metadata={
            "help": "learning-rate schedule: cosine_with_min_lr (down to a tenth) or any transformers schedule name"
        },
    )
    warmup_steps: int = field(default=50, metadata={"help": "linear warm-up steps"})
    max_steps: int = field(
        default=400, metadata={"help": "optimizer steps (num_train_epochs, when set, replaces it)"}
    )
    num_train_epochs: float | None = field(
        default=None, metadata={"help": "train this many passes over the data instead of max_steps"}
    )
    batch_size: int = field(
        default=32,
        metadata={
            "help": "sequences per process per micro-batch (TRL: per_device_train_batch_size)"
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "micro-batches per optimizer step"}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip"})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in backward (less memory, slower)"}
    )
    packing: bool = field(
        default=False,
        metadata={"help": "task dataset: pack sequences into max_length rows (SFTTrainer)"},
    )
    completion_only_loss: bool | None = field(
        default=None,
        metadata={
            "help": "task dataset, prompt/completion pairs: loss on the completion only (unset: yes)"
        },
    )
    assistant_only_loss: bool = field(
        default=False,
        metadata={"help": "task dataset, conversations: loss on the assistant's turns only"},
    )
    eval_fraction: float = field(
        default=0.02, metadata={"help": "share of the data held out for the loss before / after"}
    )
    seed: int = field(default=0, metadata={"help": "random seed"})
    output_dir: str | None = field(
        default=None,
        metadata={"help": "where the model is saved; unset: <cache_dir>/sft-<config hash>"},
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "cache root; unset: $RLHF_PG_CACHE or ~/.cache/rlhf-pg"}
    )
    reuse_cache: bool = field(
        default=True,
        metadata={"help": "return a finished model of the same config instead of training again"},
    )
    use_cpu: bool = field(
        default=False, metadata={"help": "run on the CPU even when a GPU is present"}
    )
    mixed_precision: Literal["no", "bf16", "fp16"] | None = field(
        default=None,
        metadata={"help": "no, bf16 or fp16 (TRL: bf16 / fp16 true); unset: the launcher's"},
    )
    num_threads: int = field(default=0, metadata={"help": "torch threads; 0 keeps torch's default"})
    log_every: int = field(
        default=50, metadata={"help": "log the loss every N steps (TRL: logging_steps)"}
    )
    report_to: str | list[str] = field(
        default_factory=list,
        metadata={"help": "trackers: tensorboard, wandb, trackio, all or none (several allowed)"},
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        check_types(self)
        self.report_to = normalize_report_to(self.report_to)
        check_report_to(self.report_to)
        if self.task != "dataset":
            for name, off in DATASET_ONLY.items():
                require(
                    getattr(self, name) == off,
                    self,
                    name,
                    "applies to task 'dataset' (TRL's SFTTrainer), not to the generated corpus",
                )
        require(
            self.num_train_epochs is None or self.num_train_epochs > 0,
            self,
            "num_train_epochs",
            "must be > 0 (or unset: max_steps)",
        )
        require(self.warmup_steps >= 0, self, "warmup_steps", "must be >= 0")
        require_lr_scheduler(self)
        require(self.log_every >= 1, self, "log_every", "must be >= 1")
        if self.task == "dataset":
            require(
                self.dataset_name is not None,
                self,
                "dataset_name",
                "must be set for task 'dataset'",
            )
        for name in (
            "max_steps",
            "batch_size",
            "gradient_accumulation_steps",
            "corpus_size",
            "n_layer",
            "n_head",
            "n_embd",
        ):
            require(getattr(self, name) >= 1, self, name, "must be >= 1")
        require(self.max_length >= 2, self, "max_length", "must be >= 2")
        require(self.learning_rate > 0, self, "learning_rate", "must be > 0")
        require(0.0 <= self.error_rate <= 1.0, self, "error_rate", "must be in [0, 1]")
        require(0.0 <= self.carry_slip <= 1.0, self, "carry_slip", "must be in [0, 1]")
        require(0.0 < self.eval_fraction < 0.5, self, "eval_fraction", "must be in (0, 0.5)")
        require(
            self.n_embd % self.n_head == 0,
            self,
            "n_embd",
            f"must be a multiple of n_head={self.n_head}",
        )


def sft_output_dir(cfg: SFTArgs) -> Path:
    """Where ``train_sft(cfg)`` writes: ``output_dir``, or the cache folder keyed by the config."""
    if cfg.output_dir is not None:
        return Path(cfg.output_dir)
    root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root()
    return root / f"sft-{config_hash(cfg, exclude=_NOT_IN_KEY)}"


def describe_data(cfg: SFTArgs) -> list[str]:
    """What the model was trained on, for its model card."""
    if cfg.task == "dataset":
        return [cfg.dataset_name]
    what = {
        "sentiment": "movie reviews",
        "arithmetic": "addition problems",
        "chat_arithmetic": "conversations asking sums, answered by a sloppy tutor",
    }[cfg.task]
    return [f"generated {what} ({cfg.corpus_size} texts, corpus_seed {cfg.corpus_seed})"]
