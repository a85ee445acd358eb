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

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..hf.sampling import generate_completions
from ..hf.scoring import RewardModel
from ..tasks.gold import score_gold
from ..tasks.reviews import sentiment_prompts
from ..utils.cache import atomic_dir, config_hash, default_cache_root, file_digest, is_complete
from ..utils.config import check_types, require, require_model_path
from ..utils.io import atomic_write_json
from ..utils.run_folder import check_process_group, ensure_writable_dir

_NOT_IN_KEY = ("output_dir", "cache_dir", "reuse_cache", "num_threads", "progress", "sft_path")


@dataclass
class RewardModelArgs:
    """Hyperparameters of one reward-model run (recipe YAML keys and CLI flags)."""

    sft_path: str | None = None  # the SFT model that samples the pairs (and initialises the RM)
    model_name_or_path: str | None = None  # RM initialisation; None: sft_path
    preference_dataset: str | None = None  # hub name or local folder; None: generate pairs
    dataset_split: str = "train"
    gold: Literal["vader"] = "vader"
    n_prompts: int = 3000
    prompt_seed: int = 1  # differs from the SFT corpus seed
    prompt_words: int = 4
    max_new_tokens: int = 40
    temperature: float = 1.0
    min_gold_margin: float = 0.1  # drop pairs the gold scorer can hardly tell apart
    eval_fraction: float = 0.15
    learning_rate: float = 1e-3
    num_train_epochs: float = 3.0
    batch_size: int = 32
    weight_decay: float = 0.0
    center_rewards_coefficient: float | None = 0.01
    max_length: int = 128
    seed: int = 0
    output_dir: str | None = None  # None: <cache_dir>/rm-<hash of config and SFT weights>
    cache_dir: str | None = None
    reuse_cache: bool = True
    use_cpu: bool = False
    num_threads: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check_types(self)
        require(
            self.sft_path is not None or self.preference_dataset is not None,
            self,
            "sft_path",
            "must be set unless preference_dataset is given",
        )
        for name in ("n_prompts", "batch_size", "max_new_tokens", "prompt_words", "max_length"):
            require(getattr(self, name) >= 1, self, name, "must be >= 1")
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

    dataset = load_any_dataset(cfg.preference_dataset, cfg.dataset_split)
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


def _reward_config(cfg: RewardModelArgs, output_dir: Path):
    from trl import RewardConfig

    return RewardConfig(
        output_dir=str(output_dir),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.batch_size,
        weight_decay=cfg.weight_decay,
        center_rewards_coefficient=cfg.center_rewards_coefficient,
        max_length=cfg.max_length,
        seed=cfg.seed,
        use_cpu=cfg.use_cpu,
        report_to="none",
        bf16=False,  # TRL defaults to bf16 and gradient checkpointing: both slow a tiny CPU model
        gradient_checkpointing=False,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=20,
        disable_tqdm=not cfg.progress,
        lr_scheduler_type="cosine",
        warmup_steps=20,
        dataloader_pin_memory=False,
    )


def save_reward_model(trainer, tokenizer, data, split, out: Path, train_loss, seconds) -> None:
    """Write the trained model atomically, with its normalisation statistics (mean and spread
    of its scores on the SFT samples), the pairs, and ``reward_metrics.json``."""
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


def train_reward_model(cfg: RewardModelArgs) -> Path:
    """Train (or reuse from the cache) a reward model; returns its ``save_pretrained`` folder."""
    out = rm_output_dir(cfg)
    if cfg.reuse_cache and is_complete(out):
        return out
    ensure_writable_dir(out.parent, "the folder above output_dir")  # before any work
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    from accelerate import PartialState

    from ..lm.engines import check_engine, refuse_sharded_weights

    refuse_sharded_weights("the reward-model stage")  # before any work
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
        args=_reward_config(cfg, Path(scratch.name)),
        train_dataset=split["train"],
        processing_class=tokenizer,
    )
    check_engine(trainer.accelerator)  # transformers' Trainer got the engine it was asked for
    start = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - start

    if trainer.is_world_process_zero():
        seconds = {"data_seconds": data_seconds, "train_seconds": train_seconds}
        save_reward_model(trainer, tokenizer, data, split, out, result.training_loss, seconds)
    trainer.accelerator.wait_for_everyone()
    scratch.cleanup()
    return out
