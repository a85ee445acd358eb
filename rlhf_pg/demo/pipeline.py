"""``rlhf-pg demo``: the whole InstructGPT-style pipeline on the offline sentiment task.

corpus -> BPE tokenizer -> SFT GPT-2 (cached) -> preference pairs labelled by the gold
scorer -> reward model (TRL RewardTrainer, cached) -> PPO against the reward model with a
KL penalty to the SFT reference -> ``<out>/report.md`` with plots. Nothing loads from a hub.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..utils.config import check_types, require
from ..utils.io import atomic_write_json

STAGES = ("SFT model", "reward model", "PPO", "report")


@dataclass
class DemoConfig:
    """Sizes and settings of the demo; the defaults are the offline default task."""

    out: str = "runs/demo"
    seed: int = 0
    cache_dir: str | None = None  # None: $RLHF_PG_CACHE or ~/.cache/rlhf-pg
    num_threads: int = 2
    # SFT: a ~1M-parameter GPT-2 on the generated reviews
    corpus_size: int = 20000
    vocab_size: int = 1024
    n_layer: int = 4
    n_embd: int = 128
    sft_steps: int = 800
    # reward model: pairs of SFT completions labelled by VADER
    rm_prompts: int = 3000
    # the settings of recipes/configs/rm_sentiment.yaml: 40-token completions give the gold
    # scorer more words to judge, and 3 epochs at 1e-3 kept held-out accuracy >= 0.88 on 3 seeds
    rm_epochs: float = 3.0
    rm_learning_rate: float = 1e-3
    rm_max_new_tokens: int = 40
    # PPO against the reward model
    ppo_steps: int = 40
    batch_size: int = 64
    max_new_tokens: int = 24
    learning_rate: float = 2e-4
    lr_schedule: str = "linear"  # annealing to 0 keeps the last steps from over-optimising
    kl_coef: float = 0.1
    ppo_epochs: int = 4
    num_minibatches: int = 2
    num_eval_prompts: int = 128
    eval_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("sft_steps", "rm_prompts", "ppo_steps", "batch_size", "max_new_tokens"):
            require(getattr(self, name) >= 1, self, name, "must be >= 1")
        require(self.num_threads >= 0, self, "num_threads", "must be >= 0")


def sft_args(cfg: DemoConfig):
    from ..stages.sft import SFTArgs

    return SFTArgs(
        task="sentiment",
        corpus_size=cfg.corpus_size,
        vocab_size=cfg.vocab_size,
        n_layer=cfg.n_layer,
        n_embd=cfg.n_embd,
        num_steps=cfg.sft_steps,
        seed=cfg.seed,
        warmup_steps=min(50, cfg.sft_steps),
        cache_dir=cfg.cache_dir,
        progress=cfg.progress,
    )


def rm_args(cfg: DemoConfig, sft_path: Path):
    from ..stages.reward_model import RewardModelArgs

    return RewardModelArgs(
        sft_path=str(sft_path),
        n_prompts=cfg.rm_prompts,
        num_train_epochs=cfg.rm_epochs,
        learning_rate=cfg.rm_learning_rate,
        max_new_tokens=cfg.rm_max_new_tokens,
        seed=cfg.seed,
        cache_dir=cfg.cache_dir,
        progress=cfg.progress,
    )


def ppo_args(cfg: DemoConfig, sft_path: Path, rm_path: Path):
    from ..lm import PPOConfig
    from ..stages.ppo_args import PPORecipeArgs

    args = PPORecipeArgs(
        task="sentiment",
        model_name_or_path=str(sft_path),
        reward_model_path=str(rm_path),
        num_eval_prompts=cfg.num_eval_prompts,
        eval_every=cfg.eval_every,
        save_policy=True,
    )
    config = PPOConfig(
        estimator="ppo",
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        learning_rate=cfg.learning_rate,
        lr_schedule=cfg.lr_schedule,
        kl_coef=cfg.kl_coef,
        update_epochs=cfg.ppo_epochs,
        num_minibatches=cfg.num_minibatches,
        max_steps=cfg.ppo_steps,
        seed=cfg.seed,
        output_dir=str(Path(cfg.out) / "ppo"),
        progress_bar=cfg.progress,
        cpu=True,
    )
    return args, config


def _stage(i: int, name: str) -> float:
    print(f"[{i}/{len(STAGES)}] {name} ...", flush=True)
    return time.perf_counter()


def _done(start: float, what: str) -> float:
    seconds = time.perf_counter() - start
    print(f"      {what} ({seconds:.0f} s)", flush=True)
    return seconds


def quiet_libraries() -> None:
    """Keep the demo's display to its own stages and bars (no per-file loading bars)."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def run_demo(cfg: DemoConfig) -> dict:
    """Run every stage (reusing cached SFT / reward models) and write the report."""
    from ..stages.ppo import run_ppo, summarize
    from ..stages.reward_model import train_reward_model
    from ..stages.sft import train_sft
    from .report import write_report

    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    quiet_libraries()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    begin, seconds = time.perf_counter(), {}

    t = _stage(1, "SFT model: corpus, tokenizer, GPT-2 (cached)")
    sft_path = train_sft(sft_args(cfg))
    sft = json.loads((sft_path / "sft_metrics.json").read_text())
    seconds["sft"] = _done(t, f"{sft_path}: eval loss {sft['eval_loss_after']:.3f}")

    t = _stage(2, "reward model: gold-labelled pairs, TRL RewardTrainer (cached)")
    rm_path = train_reward_model(rm_args(cfg, sft_path))
    rm = json.loads((rm_path / "reward_metrics.json").read_text())
    acc = rm["heldout_pairwise_accuracy"]
    seconds["reward_model"] = _done(t, f"{rm_path}: held-out pair accuracy {acc:.1%}")

    t = _stage(3, "PPO against the reward model, KL to the SFT reference")
    args, config = ppo_args(cfg, sft_path, rm_path)
    results = run_ppo(args, config)
    summary = summarize(results, "sentiment")
    seconds["ppo"] = _done(
        t,
        f"gold {summary['gold_mean_before']:+.3f} -> {summary['gold_mean_after']:+.3f}, "
        f"KL {summary['kl_seq_after']:.2f} nats/seq",
    )

    t = _stage(4, "report")
    seconds["before_report"] = time.perf_counter() - begin
    facts = {
        "SFT model": str(sft_path),
        "SFT parameters": sft["num_parameters"],
        "SFT held-out loss before / after": f"{sft['eval_loss_before']:.3f} / "
        f"{sft['eval_loss_after']:.3f}",
        "reward model": str(rm_path),
        "reward model held-out pairwise accuracy": acc,
        "reward model pairs (train / held-out)": f"{rm['n_train_pairs']} / {rm['n_heldout_pairs']}",
        "PPO steps x completions": f"{config.max_steps} x {config.batch_size}",
        "KL coefficient": config.kl_coef,
        "seed": cfg.seed,
        **{f"seconds, {k}": round(v, 1) for k, v in seconds.items()},
    }
    intro = (
        "Offline sentiment task: a tiny GPT-2 fine-tuned on generated movie reviews is "
        "trained with PPO against a reward model that learned VADER's preferences from pairs; "
        "VADER itself (the gold scorer) is used only to evaluate. Held-out figures use "
        f"{cfg.num_eval_prompts} prompts drawn with their own seed (not the SFT corpus's or "
        "the reward model's), two samples each at temperature 1 with a fixed sampling seed."
    )
    report = write_report(
        out, results, {"title": "rlhf-pg demo report", "intro": intro, "facts": facts}
    )
    seconds["total"] = time.perf_counter() - begin
    summary = {**summary, "rm_accuracy": acc, "seconds": seconds, "report": str(report)}
    atomic_write_json(out / "summary.json", {"config": dataclasses.asdict(cfg), **summary})
    _done(t, f"report: {report}")
    return summary
