"""Arguments of the PPO recipe: what to train and against what (``PPORecipeArgs``), plus the
trainer's hyperparameters (:class:`rlhf_pg.lm.PPOConfig`), read from one YAML file and CLI flags.

Every key of the YAML file must be a field of one of the two dataclasses, and every value
must fit its field's type; both are checked, with one line naming the key, before any
model or dataset is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..lm.config import PPOConfig
from ..utils.config import ConfigError, check_types, require

TASKS = ("sentiment", "arithmetic", "dataset")
REWARD_FNS = ("none", "exact_match", "vader")


@dataclass
class PPORecipeArgs:
    """What the PPO recipe trains: the policy, its prompts, its reward and how it is evaluated."""

    task: Literal["sentiment", "arithmetic", "dataset"] = field(
        default="sentiment",
        metadata={"help": "prompt source: generated reviews, addition problems, or a dataset"},
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
    reward_fn: Literal["none", "exact_match", "vader"] = field(
        default="none", metadata={"help": "built-in reward callable (added to the RM if both)"}
    )
    reward_fn_weight: float = field(default=1.0, metadata={"help": "weight of reward_fn"})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow hub model code for the policy"}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "task dataset: hub name or local folder/file"}
    )
    dataset_split: str = field(default="train", metadata={"help": "task dataset: split"})
    text_column: str = field(default="text", metadata={"help": "task dataset: text column"})
    prompt_words: int = field(default=4, metadata={"help": "prompt = first N words of a text"})
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

    def __post_init__(self) -> None:
        check_types(self)
        require(bool(self.model_name_or_path), self, "model_name_or_path", "must be set")
        if self.task == "dataset":
            require(self.dataset_name is not None, self, "dataset_name", "must be set")
        require(
            self.reward_model_path is not None or self.reward_fn != "none",
            self,
            "reward_fn",
            "with no reward_model_path: give at least one reward",
        )
        for name in ("prompt_words", "num_prompts", "num_eval_prompts", "eval_samples"):
            require(getattr(self, name) >= 1, self, name, "must be >= 1")
        require(self.eval_every >= 0, self, "eval_every", "must be >= 0")
        require(self.num_threads >= 0, self, "num_threads", "must be >= 0")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def check_yaml(path: str | Path) -> dict[str, Any]:
    """Read a recipe YAML file; unknown keys and mistyped values raise :class:`ConfigError`."""
    from ..utils.config import conforms, describe_type

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    types = {**_field_types(PPORecipeArgs), **_field_types(PPOConfig)}
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys: {sorted(types)}")
    for key, value in data.items():
        ok, converted = conforms(value, types[key])
        if not ok:
            raise ConfigError(
                f"{path}: {key}={value!r} is invalid; expected {describe_type(types[key])}"
            )
        data[key] = converted
    return data


def parse_ppo_args(argv: list[str] | None = None) -> tuple[PPORecipeArgs, PPOConfig]:
    """``[--config FILE.yaml] [--field value ...]`` -> checked (recipe args, trainer config)."""
    from transformers import HfArgumentParser

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser((PPORecipeArgs, PPOConfig))
    if known.config is not None:
        parser.set_defaults(**check_yaml(known.config))
    try:
        args, cfg = parser.parse_args_into_dataclasses(args=rest, look_for_args_file=False)
    except (ValueError, TypeError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(str(err)) from err
    return args, cfg


def args_to_dict(args: PPORecipeArgs, cfg: PPOConfig) -> dict[str, Any]:
    """Both dataclasses as one flat mapping (what a YAML config of the run would hold)."""
    return {**dataclasses.asdict(args), **cfg.to_dict()}
