"""Reward model: preference pairs labelled by the gold scorer, trained with TRL's RewardTrainer.

``train_reward_model(cfg)`` samples two SFT completions per prompt, lets the gold scorer
(VADER, standing in for a human) pick the preferred one, trains a GPT-2 sequence
classifier with a scalar head (initialised from the SFT model) on the Bradley-Terry loss,
reports pairwise accuracy on held-out pairs, and stores the mean and spread of its scores
on SFT samples in its config (``reward_mean`` / ``reward_std``) so a scorer can centre
them at 0. A user's own preference dataset (columns prompt?/chosen/rejected) may replace
the generated pairs.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch

from ..hf.hub import write_model_card
from ..hf.sampling import generate_completions
from ..hf.scoring import RewardModel
from ..lm.config import check_report_to, normalize_report_to
from ..lm.tracking import tracker_names
from ..tasks.gold import score_gold
from ..tasks.reviews import sentiment_prompts
from ..utils.cache import atomic_dir, config_hash, default_cache_root, file_digest, is_complete
from ..utils.config import (
    TrlName,
    check_types,
    require,
    require_lr_scheduler,
    require_model_path,
    with_aliases,
)
from ..utils.io import atomic_write_json
from ..utils.run_folder import check_process_group, ensure_writable_dir

_NOT_IN_KEY = (
    "output_dir",
    "cache_dir",
    "reuse_cache",
    "num_threads",
    "progress",
    "sft_path",
    "report_to",
    "logging_steps",
)


@with_aliases
@dataclass
class RewardModelArgs:
    """Hyperparameters of one reward-model run (recipe YAML keys and CLI flags).

    The training knobs are TRL's ``RewardConfig`` fields under their TRL names and reach
    ``RewardConfig`` unchanged (:func:`reward_config`); ``per_device_train_batch_size`` and
    ``dataset_train_split`` are accepted for ``batch_size`` / ``dataset_split``. The defaults
    are the offline demo's (fp32, no gradient checkpointing, cosine schedule), not TRL's.
    """

    TRL_NAMES: ClassVar[dict[str, TrlName]] = {
        "per_device_train_batch_size": TrlName("batch_size", note="same meaning"),
        "dataset_train_split": TrlName("dataset_split", note="same meaning"),
        "activation_checkpointing": TrlName("gradient_checkpointing", note="same meaning"),
    }

    sft_path: str | None = field(
        default=None,
        metadata={
            "help": "the SFT model that samples the pairs (and initialises the reward model)"
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "reward-model initialisation; unset: sft_path"}
    )
    preference_dataset: str | None = field(
        default=None,
        metadata={
            "help": "prompt?/chosen/rejected dataset (hub name or local); unset: generate pairs"
        },
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "preference dataset: the hub dataset's configuration"}
    )
    dataset_split: str = field(
        default="train", metadata={"help": "preference dataset: split (TRL: dataset_train_split)"}
    )
    gold: Literal["vader"] = field(
        default="vader", metadata={"help": "the scorer that labels generated pairs"}
    )
    n_prompts: int = field(
        default=3000, metadata={"help": "generated pairs: prompts, two samples each"}
    )
    prompt_seed: int = field(
        default=1,
        metadata={"help": "generated pairs: prompt seed (differs from the SFT corpus seed)"},
    )
    prompt_words: int = field(default=4, metadata={"help": "generated pairs: words per prompt"})
    max_new_tokens: int = field(default=40, metadata={"help": "generated pairs: completion length"})
    temperature: float = field(
        default=1.0, metadata={"help": "generated pairs: sampling temperature"}
    )
    min_gold_margin: float = field(
        default=0.1,
        metadata={"help": "generated pairs: drop pairs the gold scorer can hardly tell apart"},
    )
    eval_fraction: float = field(
        default=0.15, metadata={"help": "share of pairs held out for the pairwise accuracy"}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "learning rate"})
    num_train_epochs: float = field(default=3.0, metadata={"help": "passes over the pairs"})
    max_steps: int = field(
        default=-1,
        metadata={"help": "> 0: this many optimizer steps instead of num_train_epochs (as TRL)"},
    )
    batch_size: int = field(
        default=32,
        metadata={"help": "pairs per process per micro-batch (TRL: per_device_train_batch_size)"},
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "micro-batches per optimizer step"}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "weight decay"})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "transformers learning-rate schedule"}
    )
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip"})
    center_rewards_coefficient: float | None = field(
        default=0.01,
        metadata={"help": "pull the mean reward toward 0 (TRL's centring term); unset: off"},
    )
    max_length: int = field(
        default=128, metadata={"help": "longest chosen / rejected text in tokens"}
    )
    disable_dropout: bool = field(default=True, metadata={"help": "turn dropout off in the model"})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in backward (less memory, slower)"}
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision"})
    logging_steps: int = field(default=20, metadata={"help": "log every N steps"})
    report_to: str | list[str] = field(
        default_factory=list,
        metadata={"help": "trackers: tensorboard, wandb, trackio, all or none (several allowed)"},
    )
    seed: int = field(default=0, metadata={"help": "random seed"})
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "where the model is saved; unset: <cache_dir>/rm-<hash of config and SFT weights>"
        },
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
    num_threads: int = field(default=0, metadata={"help": "torch threads; 0 keeps torch's default"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        check_types(self)
        self.report_to = normalize_report_to(self.report_to)
        check_report_to(self.report_to)
        require(
            self.sft_path is not None or self.preference_dataset is not None,
            self,
            "sft_path",
            "must be set unless preference_dataset is given",
        )
        for name in (
            "n_prompts",
            "batch_size",
            "max_new_tokens",
            "prompt_words",
            "max_length",
            "gradient_accumulation_steps",
            "logging_steps",
        ):
            require(getattr(self, name) >= 1, self, name, "must be >= 1")
        require(self.warmup_steps >= 0, self, "warmup_steps", "must be >= 0")
        require_lr_scheduler(self)
        require(
            self.max_steps == -1 or self.max_steps >= 1, self, "max_steps", "must be -1 or >= 1"
        )
        require(self.learning_rate > 0, self, "learning_rate", "must be > 0")
        require(self.num_train_epochs > 0, self, "num_train_epochs", "must be > 0")
        require(self.temperature > 0, self, "temperature", "must be > 0")
        require(0.0 < self.eval_fraction < 1.0, self, "eval_fraction", "must be in (0, 1)")
        require(self.min_gold_margin >= 0, self, "min_gold_margin", "must be >= 0")
        sft = "the SFT stage (python recipes/sft.py --config ... --output_dir <that folder>)"
        require_model_path(self, "sft_path", sft)
        require_model_path(self, "model_name_or_path", sft)


def rm_output_dir(cfg: RewardModelArgs) -> Path:
    """``output_dir``, or a cache folder keyed by the config and the SFT weights it starts from."""
    if cfg.output_dir is not None:
        return Path(cfg.output_dir)
    extra = ""
    for path in (cfg.sft_path, cfg.model_name_or_path):
        if path is not None and (Path(path) / "model.safetensors").is_file():
            extra += file_digest(Path(path) / "model.safetensors")
        elif path is not None:
            extra += str(path)
    root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root()
    return root / f"rm-{config_hash(cfg, exclude=_NOT_IN_KEY, extra=extra)}"


def make_preference_pairs(
    prompts: list[str],
    first: list[str],
    second: list[str],
    scores_first: list[float],
    scores_second: list[float],
    min_margin: float = 0.0,
):
    """A ``datasets.Dataset`` of prompt/chosen/rejected: the completion with the higher gold
    score is chosen; pairs whose scores differ by less than ``min_margin`` (or tie) are dropped."""
    from datasets import Dataset

    rows = {"prompt": [], "chosen": [], "rejected": [], "gold_chosen": [], "gold_rejected": []}
    for p, a, b, sa, sb in zip(prompts, first, second, scores_first, scores_second):
        if abs(sa - sb) < max(min_margin, 1e-9):
            continue
        (c, sc), (r, sr) = ((a, sa), (b, sb)) if sa > sb else ((b, sb), (a, sa))
        for key, value in zip(rows, (p, c, r, sc, sr)):
            rows[key].append(value)
    return Dataset.from_dict(rows)


def generate_preferences(cfg: RewardModelArgs):
    """Two SFT completions per prompt, labelled by the gold scorer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.sft_path)
    policy = AutoModelForCausalLM.from_pretrained(cfg.sft_path)
    prompts = sentiment_prompts(cfg.n_prompts, seed=cfg.prompt_seed, n_words=cfg.prompt_words)
    kw = {
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "progress": cfg.progress,
    }
    first, _ = generate_completions(
        policy, tokenizer, prompts, generator=torch.Generator().manual_seed(cfg.seed), **kw
    )
    second, _ = generate_completions(
        policy, tokenizer, prompts, generator=torch.Generator().manual_seed(cfg.seed + 1), **kw
    )
    gold_a = score_gold([p + c for p, c in zip(prompts, first)])
    gold_b = score_gold([p + c for p, c in zip(prompts, second)])
    return make_preference_pairs(prompts, first, second, gold_a, gold_b, cfg.min_gold_margin)


def load_preferences(cfg: RewardModelArgs):
    """A user's preference dataset, checked for chosen/rejected columns (prompt optional)."""
    from ..tasks.datasets import load_any_dataset, require_columns

    dataset = load_any_dataset(cfg.preference_dataset, cfg.dataset_split, cfg.dataset_config)
    require_columns(
        dataset, ["chosen", "rejected"], f"preference dataset {cfg.preference_dataset!r}"
    )
    return dataset


def pairwise_accuracy(scorer, dataset) -> float:
    """Share of pairs where ``scorer`` rates the chosen text above the rejected one."""
    prompts = dataset["prompt"] if "prompt" in dataset.column_names else [""] * len(dataset)
    chosen = scorer.score_texts([p + c for p, c in zip(prompts, dataset["chosen"])])
    rejected = scorer.score_texts([p + r for p, r in zip(prompts, dataset["rejected"])])
    return sum(c > r for c, r in zip(chosen, rejected)) / max(1, len(chosen))


def reward_config(cfg: RewardModelArgs, output_dir: Path):
    """TRL's ``RewardConfig`` with the user's knobs. Only where and when things are saved is
    fixed here: the Trainer saves nothing (we write the folder atomically ourselves)."""
    from trl import RewardConfig

    return RewardConfig(
        output_dir=str(output_dir),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        max_grad_norm=cfg.max_grad_norm,
        center_rewards_coefficient=cfg.center_rewards_coefficient,
        max_length=cfg.max_length,
        disable_dropout=cfg.disable_dropout,
        seed=cfg.seed,
        use_cpu=cfg.use_cpu,
        report_to=cfg.report_to or "none",
        bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5's name
        save_strategy="no",
        eval_strategy="no",
        logging_steps=cfg.logging_steps,
        disable_tqdm=not cfg.progress,
        dataloader_pin_memory=False,
    )


def save_reward_model(
    cfg: RewardModelArgs, trainer, tokenizer, data, split, out: Path, train_loss, seconds
) -> None:
    """Write the trained model atomically, with its normalisation statistics (mean and spread
    of its scores on the SFT samples), the pairs, ``reward_metrics.json``, the trackers'
    logs and a model card."""
    with atomic_dir(out) as tmp:
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        raw = RewardModel.from_pretrained(tmp, normalize=False)
        held_out = pairwise_accuracy(raw, split["test"])
        train_acc = pairwise_accuracy(
            raw, split["train"].select(range(min(500, len(split["train"]))))
        )
        # SFT samples (both sides of every pair) define the zero and the unit of the reward.
        prompts = data["prompt"] if "prompt" in data.column_names else [""] * len(data)
        samples = [p + c for p, c in zip(prompts, data["chosen"])]
        samples += [p + r for p, r in zip(prompts, data["rejected"])]
        scores = raw.score_texts(samples)
        trainer.model.config.reward_mean = statistics.fmean(scores)
        trainer.model.config.reward_std = statistics.pstdev(scores) or 1.0
        trainer.model.config.save_pretrained(tmp)
        split["train"].to_json(tmp / "pairs_train.jsonl")
        split["test"].to_json(tmp / "pairs_heldout.jsonl")
        atomic_write_json(
            tmp / "reward_metrics.json",
            {
                "heldout_pairwise_accuracy": held_out,
                "train_pairwise_accuracy": train_acc,
                "n_train_pairs": len(split["train"]),
                "n_heldout_pairs": len(split["test"]),
                "train_loss": train_loss,
                "reward_mean": trainer.model.config.reward_mean,
                "reward_std": trainer.model.config.reward_std,
                **seconds,
                "log_history": trainer.state.log_history,
            },
        )
        logs = Path(trainer.args.output_dir) / "runs"  # TensorBoard's, when report_to has it
        if logs.is_dir():
            shutil.copytree(logs, tmp / "logs")
        metrics = json.loads((tmp / "reward_metrics.json").read_text())
        metrics.pop("log_history")
        data_name = cfg.preference_dataset or (
            f"preference pairs generated here: {cfg.n_prompts} prompts, two samples of the SFT "
            f"model each, labelled by the gold scorer ({cfg.gold})"
        )
        write_model_card(
            tmp,
            title="Reward model",
            stage="reward-model",
            base_model=cfg.model_name_or_path or cfg.sft_path,
            datasets=[data_name],
            config=dataclasses.asdict(cfg),
            metrics=metrics,
        )


def train_reward_model(cfg: RewardModelArgs) -> Path:
    """Train (or reuse from the cache) a reward model; returns its ``save_pretrained`` folder."""
    out = rm_output_dir(cfg)
    if cfg.reuse_cache and is_complete(out):
        return out
    tracker_names(cfg.report_to)  # a tracker that is not installed: one line, now
    ensure_writable_dir(out.parent, "the folder above output_dir")  # before any work
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    from accelerate import PartialState

    from ..lm.engines import check_engine, check_hf_trainer_launcher, refuse_sharded_weights

    refuse_sharded_weights("the reward-model stage")  # before any work
    check_hf_trainer_launcher("the reward-model stage", cpu=cfg.use_cpu)
    check_process_group(PartialState(cpu=cfg.use_cpu).num_processes, cpu_flag="--use_cpu true")
    start = time.perf_counter()
    data = load_preferences(cfg) if cfg.preference_dataset else generate_preferences(cfg)
    if len(data) < 4:
        raise ValueError(
            f"reward model: only {len(data)} preference pairs; raise n_prompts or lower min_gold_margin"
        )
    split = data.train_test_split(test_size=cfg.eval_fraction, seed=cfg.seed)
    data_seconds = time.perf_counter() - start

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardTrainer

    init = cfg.model_name_or_path or cfg.sft_path
    tokenizer = AutoTokenizer.from_pretrained(init)
    model = AutoModelForSequenceClassification.from_pretrained(init, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    scratch = tempfile.TemporaryDirectory(prefix="rlhf-pg-rm-")  # Trainer wants an output_dir
    trainer = RewardTrainer(
        model=model,
        args=reward_config(cfg, Path(scratch.name)),
        train_dataset=split["train"],
        processing_class=tokenizer,
    )
    check_engine(trainer.accelerator)  # transformers' Trainer got the engine it was asked for
    start = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - start

    if trainer.is_world_process_zero():
        seconds = {"data_seconds": data_seconds, "train_seconds": train_seconds}
        save_reward_model(cfg, trainer, tokenizer, data, split, out, result.training_loss, seconds)
    trainer.accelerator.wait_for_everyone()
    scratch.cleanup()
    return out
