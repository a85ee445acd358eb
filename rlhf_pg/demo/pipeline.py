"""``rlhf-pg demo``: a whole RLHF pipeline on an offline task, chosen by ``task``.

``sentiment`` (the default), the InstructGPT-style pipeline: corpus -> BPE tokenizer -> SFT
GPT-2 (cached) -> preference pairs labelled by the gold scorer -> reward model (TRL
RewardTrainer, cached) -> PPO against the reward model with a KL penalty to the SFT
reference -> ``<out>/report.md`` with plots.

``chat-arithmetic``, a verifiable reward in chat format: conversations (a user asks a sum)
-> ChatML tokenizer -> SFT Qwen2 on a sloppy tutor's answers (cached) -> GRPO, RLOO and PPO
from that SFT model, each rewarded by exact match against the dataset's ``answer`` column
-> ``<out>/report.md`` with the held-out exact match of each. Nothing loads from a hub.

The stages are the recipes': their settings come from ``recipes/configs/*_<task>.yaml``
(``RECIPE_CONFIGS``; so the demo and the recipes cannot drift apart), under the demo's
run-level settings (seed, cache, output folder) and the per-stage overrides of
:class:`DemoConfig`. RL runs through the PPO stage, i.e. ``PPOTrainer.train``.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..lm import PPOConfig
from ..stages.ppo import run_ppo, summarize, write_policy_card
from ..stages.ppo_args import PPORecipeArgs, args_to_dict
from ..stages.reward_model import RewardModelArgs, train_reward_model
from ..stages.sft import SFTArgs, train_sft
from ..utils.config import (
    ConfigError,
    check_keys,
    check_types,
    config_from_dict,
    load_yaml_config,
    require,
    split_values,
)
from ..utils.io import atomic_write_json
from ..utils.threads import set_torch_threads
from .report import write_chat_report, write_report

TASKS = ("sentiment", "chat-arithmetic")
STAGES = ("SFT model", "reward model", "PPO", "report")  # of the sentiment task
ESTIMATORS = ("grpo", "rloo", "ppo")  # the RL runs of chat-arithmetic, in the order they run
# the recipe configs the demo composes, by task and stage
RECIPE_CONFIGS = {
    "sentiment": {
        "sft": "sft_sentiment.yaml",
        "reward_model": "rm_sentiment.yaml",
        "ppo": "ppo_sentiment.yaml",
    },
    "chat-arithmetic": {
        "sft": "sft_chat_arithmetic.yaml",
        **{name: f"{name}_chat_arithmetic.yaml" for name in ESTIMATORS},
    },
}
RL_CLASSES = (PPORecipeArgs, PPOConfig)
STAGE_CLASSES: dict[str, tuple[type, ...]] = {
    "sft": (SFTArgs,),
    "reward_model": (RewardModelArgs,),
    "ppo": RL_CLASSES,
    "grpo": RL_CLASSES,
    "rloo": RL_CLASSES,
}
# rlhf_pg/demo/pipeline.py -> the repository root, which holds recipes/configs
DEFAULT_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "recipes" / "configs"


@dataclass
class DemoConfig:
    """Run-level settings of the demo, plus per-stage overrides of the recipe YAMLs.

    ``sft``, ``reward_model`` and ``ppo`` map field names of :class:`SFTArgs`,
    :class:`RewardModelArgs` and :class:`PPORecipeArgs` / :class:`PPOConfig` to values that
    replace those of the stage's recipe YAML (e.g. ``ppo: {max_steps: 20}``). For
    ``task: chat-arithmetic`` the stages are ``sft`` and one RL run per name in
    ``estimators``, each overridden by the field of its name (``grpo``, ``rloo``, ``ppo``).
    """

    task: Literal["sentiment", "chat-arithmetic"] = "sentiment"
    out: str = "runs/demo"
    seed: int = 0  # of every stage
    cache_dir: str | None = None  # None: $RLHF_PG_CACHE or ~/.cache/rlhf-pg
    num_threads: int = 0  # 0: $OMP_NUM_THREADS, else the physical cores (utils.threads)
    progress: bool = True
    configs_dir: str | None = None  # None: recipes/configs of this source tree
    estimators: list[str] = field(default_factory=lambda: list(ESTIMATORS))
    sft: dict[str, Any] = field(default_factory=dict)
    reward_model: dict[str, Any] = field(default_factory=dict)
    ppo: dict[str, Any] = field(default_factory=dict)
    grpo: dict[str, Any] = field(default_factory=dict)
    rloo: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_types(self)
        require(self.num_threads >= 0, self, "num_threads", "must be >= 0")
        bad = [e for e in self.estimators if e not in ESTIMATORS]
        require(
            not bad and len(set(self.estimators)) == len(self.estimators) >= 1,
            self,
            "estimators",
            f"must be distinct names among {list(ESTIMATORS)}",
        )
        stages = RECIPE_CONFIGS[self.task]
        for stage, classes in STAGE_CLASSES.items():
            if getattr(self, stage) and stage not in stages:
                raise ConfigError(
                    f"DemoConfig.{stage}: task {self.task!r} has no {stage} stage; "
                    f"its stages are {list(stages)}"
                )
            check_keys(classes, getattr(self, stage), f"DemoConfig.{stage}")
        # build every stage's arguments now (stand-in model paths), so a bad value in a
        # YAML or an override fails here, in one line, before any stage has run
        sft_args(self)
        if self.task == "sentiment":
            rm_args(self, Path("<SFT model>"))
            ppo_args(self, Path("<SFT model>"), Path("<reward model>"))
        else:
            for name in self.estimators:
                rl_args(self, name, Path("<SFT model>"))


def recipe_values(cfg: DemoConfig, stage: str) -> tuple[dict[str, Any], str]:
    """The stage's recipe YAML as a dict (keys checked), and its path for messages."""
    root = Path(cfg.configs_dir) if cfg.configs_dir else DEFAULT_CONFIGS_DIR
    path = root / RECIPE_CONFIGS[cfg.task][stage]
    if not path.is_file():
        raise ConfigError(
            f"the demo's recipe config {path} is missing; the demo composes "
            f"{sorted(RECIPE_CONFIGS[cfg.task].values())} of a source checkout "
            "(pip install -e .) or of DemoConfig.configs_dir"
        )
    return load_yaml_config(path, STAGE_CLASSES[stage]), str(path)


def _compose(cfg: DemoConfig, stage: str, run_level: dict[str, Any]) -> tuple:
    """Recipe YAML < the demo's run-level values < the stage's overrides, checked."""
    values, path = recipe_values(cfg, stage)
    values = {**values, **run_level, **getattr(cfg, stage)}
    source = f"{path} with DemoConfig.{stage}"
    classes = STAGE_CLASSES[stage]
    parts = split_values(classes, values, source)
    return tuple(config_from_dict(c, part, source) for c, part in zip(classes, parts))


def sft_args(cfg: DemoConfig) -> SFTArgs:
    run_level = {"seed": cfg.seed, "cache_dir": cfg.cache_dir, "progress": cfg.progress}
    return _compose(cfg, "sft", run_level)[0]


def rm_args(cfg: DemoConfig, sft_path: Path) -> RewardModelArgs:
    run_level = {"sft_path": str(sft_path), "seed": cfg.seed, "cache_dir": cfg.cache_dir}
    return _compose(cfg, "reward_model", {**run_level, "progress": cfg.progress})[0]


def ppo_args(cfg: DemoConfig, sft_path: Path, rm_path: Path) -> tuple[PPORecipeArgs, PPOConfig]:
    run_level = {
        "model_name_or_path": str(sft_path),
        "reward_model_path": str(rm_path),
        "save_policy": True,
        "seed": cfg.seed,
        "output_dir": str(Path(cfg.out) / "ppo"),
        # the demo is rerun into the same folder: each run replaces the last one's PPO stage
        "overwrite_output_dir": True,
        "progress_bar": cfg.progress,
        "use_cpu": True,  # the offline default: a ~1M-parameter model is fastest on the CPU
    }
    args, config = _compose(cfg, "ppo", run_level)
    return args, config


def rl_args(cfg: DemoConfig, name: str, sft_path: Path) -> tuple[PPORecipeArgs, PPOConfig]:
    """The chat task's RL run ``name`` (``grpo``, ``rloo`` or ``ppo``) from the SFT model."""
    run_level = {
        "model_name_or_path": str(sft_path),
        "save_policy": True,
        "seed": cfg.seed,
        "output_dir": str(Path(cfg.out) / name),
        "overwrite_output_dir": True,  # a rerun replaces the last run's RL stages
        "progress_bar": cfg.progress,
        "use_cpu": True,  # a tiny model is fastest on the CPU
    }
    args, config = _compose(cfg, name, run_level)
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


def _write_report(
    cfg: DemoConfig, sft_run, rm_run, ppo_config, results, seconds, threads: tuple[int, str]
) -> Path:
    (sft_path, sft), (rm_path, rm), (args, config) = sft_run, rm_run, ppo_config
    facts = {
        "SFT model": str(sft_path),
        "SFT parameters": sft["num_parameters"],
        "SFT held-out loss before / after": f"{sft['eval_loss_before']:.3f} / "
        f"{sft['eval_loss_after']:.3f}",
        "reward model": str(rm_path),
        "reward model held-out pairwise accuracy": rm["heldout_pairwise_accuracy"],
        "reward model pairs (train / held-out)": f"{rm['n_train_pairs']} / {rm['n_heldout_pairs']}",
        "PPO steps x completions": f"{config.max_steps} x {config.batch_size}",
        "KL coefficient": config.kl_coef,
        "seed": cfg.seed,
        "torch threads": f"{threads[0]} ({threads[1]})",
        **{f"seconds, {k}": round(v, 1) for k, v in seconds.items()},
    }
    intro = (
        "Offline sentiment task: a tiny GPT-2 fine-tuned on generated movie reviews is "
        "trained with PPO against a reward model that learned VADER's preferences from pairs; "
        "VADER itself (the gold scorer) is used only to evaluate. Held-out figures use "
        f"{args.num_eval_prompts} prompts drawn with their own seed (not the SFT corpus's or "
        f"the reward model's), {args.eval_samples} sample(s) each at temperature "
        f"{config.temperature:g} with a fixed sampling seed."
    )
    summary = {"title": "rlhf-pg demo report", "intro": intro, "facts": facts}
    return write_report(Path(cfg.out), results, summary)


def run_demo(cfg: DemoConfig) -> dict:
    """Run every stage of ``cfg.task`` (reusing cached models) and write the report."""
    threads = set_torch_threads(cfg.num_threads)
    quiet_libraries()
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    if cfg.task == "chat-arithmetic":
        return run_chat_arithmetic(cfg, threads)
    return run_sentiment(cfg, threads)


def run_sentiment(cfg: DemoConfig, threads: tuple[int, str]) -> dict:
    """SFT -> reward model -> PPO -> report on the sentiment task."""
    out = Path(cfg.out)
    begin, seconds = time.perf_counter(), {}

    t = _stage(1, "SFT model: corpus, tokenizer, GPT-2 (cached)")
    sft_cfg = sft_args(cfg)
    sft_path = train_sft(sft_cfg)
    sft = json.loads((sft_path / "sft_metrics.json").read_text())
    seconds["sft"] = _done(t, f"{sft_path}: eval loss {sft['eval_loss_after']:.3f}")

    t = _stage(2, "reward model: gold-labelled pairs, TRL RewardTrainer (cached)")
    rm_cfg = rm_args(cfg, sft_path)
    rm_path = train_reward_model(rm_cfg)
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
    report = _write_report(
        cfg, (sft_path, sft), (rm_path, rm), (args, config), results, seconds, threads
    )
    write_policy_card(Path(config.output_dir) / "policy", args, config, results, report.read_text())
    seconds["total"] = time.perf_counter() - begin
    summary = {**summary, "rm_accuracy": acc, "seconds": seconds, "report": str(report)}
    stage_settings = {
        "sft": dataclasses.asdict(sft_cfg),
        "reward_model": dataclasses.asdict(rm_cfg),
        "ppo": args_to_dict(args, config),
    }
    record = {"config": dataclasses.asdict(cfg), "stages": stage_settings, **summary}
    atomic_write_json(out / "summary.json", record)
    _done(t, f"report: {report}")
    return summary


def run_chat_arithmetic(cfg: DemoConfig, threads: tuple[int, str]) -> dict:
    """SFT on the tutor's conversations, then each estimator from the SFT model against the
    answer-column exact match, then the report."""
    out = Path(cfg.out)
    begin, seconds = time.perf_counter(), {}
    steps = len(cfg.estimators) + 2

    def stage(i: int, name: str) -> float:
        print(f"[{i}/{steps}] {name} ...", flush=True)
        return time.perf_counter()

    t = stage(1, "SFT model: conversations, ChatML tokenizer, Qwen2 (cached)")
    sft_cfg = sft_args(cfg)
    sft_path = train_sft(sft_cfg)
    sft = json.loads((sft_path / "sft_metrics.json").read_text())
    seconds["sft"] = _done(t, f"{sft_path}: eval loss {sft['eval_loss_after']:.3f}")

    runs, stage_settings = {}, {"sft": dataclasses.asdict(sft_cfg)}
    for i, name in enumerate(cfg.estimators, start=2):
        t = stage(i, f"{name.upper()} from the SFT model, reward: exact match of the answer")
        args, config = rl_args(cfg, name, sft_path)
        results = run_ppo(args, config)
        summary = summarize(results, "chat_arithmetic")
        runs[name] = {"results": results, "summary": summary, "args": (args, config)}
        stage_settings[name] = args_to_dict(args, config)
        seconds[name] = _done(
            t,
            f"held-out exact match, greedy {summary['accuracy_before']:.1%} -> "
            f"{summary['accuracy_after']:.1%}, sampled {summary['accuracy_sampled_before']:.1%}"
            f" -> {summary['accuracy_sampled_after']:.1%}",
        )

    t = stage(steps, "report")
    seconds["before_report"] = time.perf_counter() - begin
    facts = {
        "SFT model": str(sft_path),
        "SFT parameters": sft["num_parameters"],
        "SFT held-out loss before / after": f"{sft['eval_loss_before']:.3f} / "
        f"{sft['eval_loss_after']:.3f}",
        "seed": cfg.seed,
        "torch threads": f"{threads[0]} ({threads[1]})",
        **{f"seconds, {k}": round(v, 1) for k, v in seconds.items()},
    }
    report = write_chat_report(out, {k: v["results"] for k, v in runs.items()}, facts)
    for run in runs.values():  # each policy's model card carries the demo's report
        args, config = run["args"]
        policy = Path(config.output_dir) / "policy"
        write_policy_card(policy, args, config, run["results"], report.read_text())
    seconds["total"] = time.perf_counter() - begin
    summary = {
        "estimators": {name: run["summary"] for name, run in runs.items()},
        "seconds": seconds,
        "report": str(report),
    }
    record = {"config": dataclasses.asdict(cfg), "stages": stage_settings, **summary}
    atomic_write_json(out / "summary.json", record)
    _done(t, f"report: {report}")
    return summary
