"""Arguments of the PPO recipe: what to train and against what (``PPORecipeArgs``), plus the
trainer's hyperparameters (:class:`rlhf_pg.lm.PPOConfig`), read from one YAML file and CLI flags.

Every key of the YAML file must be a field (or a deprecated alias, e.g. ``ppo_epochs``) of
one of the two dataclasses, and every value must fit its field's type; both are checked by
the one config loader, with one line naming the key, before any model or dataset is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ..lm import PPOConfig
from ..utils.config import (
    check_types,
    parse_recipe_args,
    require,
    require_model_path,
    with_aliases,
)
from .rewards import REWARD_FN_FORMS, resolve_reward_fn


@with_aliases
@dataclass
class PPORecipeArgs:
    """What the PPO recipe trains: the policy, its prompts, its reward and how it is evaluated."""

    ALIASES: ClassVar[dict[str, str]] = {"dataset_split": "dataset_train_split"}

    task: Literal["sentiment", "arithmetic", "chat_arithmetic", "dataset"] = field(
        default="sentiment",
        metadata={
            "help": "prompt source: generated reviews, addition problems (plain, or as "
            "conversations with an answer column), or a dataset (dataset_name; its "
            "prompt_column holds strings or conversations)"
        },
    )
    model_name_or_path: str = field(
        default="", metadata={"help": "policy to start from (SFT folder or hub name)"}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "tokenizer; default: the policy's"}
    )
    ref_model_name_or_path: str | None = field(
        default=None, metadata={"help": "KL reference; default: a frozen copy of the policy"}
    )
    reward_model_path: str | None = field(
        default=None, metadata={"help": "sequence classifier used as (part of) the reward"}
    )
    reward_model_label: str | None = field(
        default=None,
        metadata={"help": "classifier with several labels: the label whose logit is the reward"},
    )
    reward_model_weight: float = field(default=1.0, metadata={"help": "weight of the RM"})
    reward_fn: str = field(
        default="none",
        metadata={
            "help": "reward function (added to the RM if both): none, exact_match, "
            "answer_exact_match, vader, module:function or path/to/file.py:function; it gets "
            "the dataset's other columns as keyword arguments"
        },
    )
    reward_fn_weight: float = field(default=1.0, metadata={"help": "weight of reward_fn"})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow hub model code for the policy"}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "task dataset: hub name, a save_to_disk folder, a json/jsonl/csv/parquet "
            "file, or a folder of them (train.jsonl, test.jsonl)"
        },
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "task dataset: hub configuration name"}
    )
    dataset_train_split: str = field(
        default="train", metadata={"help": "task dataset: split of the training prompts"}
    )
    dataset_test_split: str | None = field(
        default=None,
        metadata={
            "help": "task dataset: split of the evaluation prompts; default: the first "
            "num_eval_prompts rows of the training split, held out"
        },
    )
    prompt_column: str = field(
        default="prompt",
        metadata={"help": "task dataset: column of prompts (strings or conversations)"},
    )
    text_column: str | None = field(
        default=None,
        metadata={
            "help": "task dataset without prompts: prompt = the first prompt_words words of "
            "this text column (instead of prompt_column)"
        },
    )
    prompt_words: int = field(
        default=4, metadata={"help": "prompt = first N words of a text (sentiment, text_column)"}
    )
    num_prompts: int = field(default=2048, metadata={"help": "training prompts"})
    num_eval_prompts: int = field(default=128, metadata={"help": "held-out evaluation prompts"})
    eval_every: int = field(default=10, metadata={"help": "evaluate every N steps; 0 = ends"})
    eval_samples: int = field(
        default=2,
        metadata={"help": "samples per eval prompt (sentiment; arithmetic sampled accuracy)"},
    )
    prompt_seed: int = field(default=1, metadata={"help": "seed of the generated train prompts"})
    eval_seed: int = field(default=2, metadata={"help": "seed of the generated eval prompts"})
    max_operand: int = field(default=49, metadata={"help": "arithmetic: as in the SFT corpus"})
    held_out_fraction: float = field(default=0.2, metadata={"help": "arithmetic: as in SFT"})
    corpus_seed: int = field(default=0, metadata={"help": "arithmetic: split seed, as in SFT"})
    num_threads: int = field(default=0, metadata={"help": "torch threads; 0 keeps the default"})
    save_policy: bool = field(default=True, metadata={"help": "save_pretrained the final policy"})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "a checkpoint-* folder of an earlier run (save_every) to continue from"},
    )

    def __post_init__(self) -> None:
        check_types(self)
        require(bool(self.model_name_or_path), self, "model_name_or_path", "must be set")
        if self.task == "dataset":
            require(self.dataset_name is not None, self, "dataset_name", "must be set")
        require(
            self.reward_model_path is not None or self.reward_fn != "none",
            self,
            "reward_fn",
            f"with no reward_model_path: give at least one reward ({REWARD_FN_FORMS})",
        )
        resolve_reward_fn(self.reward_fn)  # a name that does not import: one line, now
        for name in ("prompt_words", "num_prompts", "num_eval_prompts", "eval_samples"):
            require(getattr(self, name) >= 1, self, name, "must be >= 1")
        require(self.eval_every >= 0, self, "eval_every", "must be >= 0")
        require(self.num_threads >= 0, self, "num_threads", "must be >= 0")
        sft = "the SFT stage (python recipes/sft.py --config ... --output_dir <that folder>)"
        rm = "the reward-model stage (python recipes/reward_model.py --config ... --output_dir <that folder>)"
        require_model_path(self, "model_name_or_path", sft)
        require_model_path(self, "ref_model_name_or_path", sft)
        require_model_path(self, "reward_model_path", rm)


def parse_ppo_args(argv: list[str] | None = None) -> tuple[PPORecipeArgs, PPOConfig]:
    """``[--config FILE.yaml] [--field value ...]`` -> checked (recipe args, trainer config),
    through the project's one loader (:func:`rlhf_pg.utils.config.parse_recipe_args`)."""
    return parse_recipe_args((PPORecipeArgs, PPOConfig), argv)


def args_to_dict(args: PPORecipeArgs, cfg: PPOConfig) -> dict[str, Any]:
    """Both dataclasses as one flat mapping (what a YAML config of the run would hold)."""
    return {**dataclasses.asdict(args), **cfg.to_dict()}
