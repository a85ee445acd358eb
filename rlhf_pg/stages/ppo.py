"""The PPO stage: load the policy, build prompts and rewards, and run
:meth:`rlhf_pg.lm.PPOTrainer.train` with two callbacks, so checkpoints (``save_every``),
resume, ``metrics.jsonl`` and trackers behave as in any other use of the trainer.

``run_ppo(args, config)`` serves the PPO recipe (``recipes/ppo.py``) and the demo alike:

- :class:`GoldMetrics` (sentiment task): ``gold/mean`` and ``gold/positive`` of each
  training batch, returned from ``on_rollout`` so the trainer logs them with the step;
- :class:`RunRecord`: every step's metrics, and the held-out evaluation
  (:func:`rlhf_pg.stages.evaluate.evaluate_policy`) before training, every ``eval_every``
  steps and after the last step; they end up in ``<output_dir>/ppo_results.json``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..hf.hub import write_model_card
from ..lm import PPOConfig, PPOTrainer, TrainerCallback
from ..tasks.arithmetic import arithmetic_prompts
from ..tasks.gold import fraction_positive, gold_reward
from ..tasks.reviews import sentiment_prompts
from ..utils.io import atomic_write_json
from .evaluate import PeftReference, evaluate_policy
from .ppo_args import PPORecipeArgs, args_to_dict
from .rewards import build_reward


def load_policy(args: PPORecipeArgs):
    """Policy, tokenizer (left padding) and optional separate reference, via ``from_pretrained``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    remote = args.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(
        args.tokenizer_name_or_path or args.model_name_or_path,
        padding_side="left",
        trust_remote_code=remote,
    )
    policy = AutoModelForCausalLM.from_pretrained(args.model_name_or_path, trust_remote_code=remote)
    ref = None
    if args.ref_model_name_or_path is not None:
        ref = AutoModelForCausalLM.from_pretrained(
            args.ref_model_name_or_path, trust_remote_code=remote
        )
    return policy, tokenizer, ref


def build_prompts(args: PPORecipeArgs) -> tuple[list[str], list[str]]:
    """(training prompts, held-out evaluation prompts) for the task."""
    if args.task == "sentiment":
        train = sentiment_prompts(
            args.num_prompts, seed=args.prompt_seed, n_words=args.prompt_words
        )
        held = sentiment_prompts(
            args.num_eval_prompts, seed=args.eval_seed, n_words=args.prompt_words
        )
        return train, held
    if args.task == "arithmetic":
        split = dict(
            max_operand=args.max_operand,
            held_out_fraction=args.held_out_fraction,
            seed=args.corpus_seed,
        )
        train = arithmetic_prompts("train", **split)[: args.num_prompts]
        return train, arithmetic_prompts("held_out", **split)[: args.num_eval_prompts]
    from ..tasks.datasets import load_texts

    texts = load_texts(
        args.dataset_name,
        args.dataset_split,
        args.text_column,
        args.num_prompts + args.num_eval_prompts,
    )
    prompts = [" ".join(t.split()[: args.prompt_words]) for t in texts if t.split()]
    if len(prompts) < 2:
        raise ValueError(f"dataset {args.dataset_name!r} gave {len(prompts)} non-empty texts")
    n_eval = min(args.num_eval_prompts, len(prompts) // 2)
    return prompts[n_eval:], prompts[:n_eval]


class GoldMetrics(TrainerCallback):
    """The gold score of each training batch (sentiment task), logged with the step's metrics.

    The gold scorer never feeds the update: it only shows whether the proxy reward the
    policy optimises still tracks the preference it was learned from."""

    def on_rollout(self, trainer, rollout) -> dict[str, float]:
        gold = gold_reward(list(rollout.prompts), list(rollout.completions))
        return {"gold/mean": statistics.fmean(gold), "gold/positive": fraction_positive(gold)}


class RunRecord(TrainerCallback):
    """Keeps every step's metrics (``history``) and runs ``evaluate`` after every
    ``every``-th step and after step ``last`` (``evals``)."""

    def __init__(self, evaluate: Callable[[], dict], every: int, last: int) -> None:
        self.evaluate, self.every, self.last = evaluate, every, last
        self.history: list[dict] = []
        self.evals: list[dict] = []

    def on_step_end(self, trainer, metrics: dict[str, float]) -> None:
        step = trainer.state.step
        self.history.append({"step": step, **metrics})
        if step % self.every == 0 or step == self.last:
            self.evals.append(self.evaluate())


def evaluate_trainer(trainer: PPOTrainer, args: PPORecipeArgs, prompts: list[str], reward) -> dict:
    """Held-out metrics of the trainer's current policy, tagged with its step. Sampling uses
    its own generator (seed ``eval_seed``): training's samples do not depend on how often
    it is evaluated."""
    model = trainer.unwrapped_model.pretrained_model
    # the trainer's reference: a frozen model, or (LoRA) the base with the reference adapter
    # or with adapters disabled
    adapter = trainer.unwrapped_model.reference_adapter
    reference = (
        trainer.ref_model if trainer.ref_model is not None else PeftReference(model, adapter)
    )
    cfg = trainer.config
    with trainer.accelerator.autocast():
        metrics = evaluate_policy(
            model,
            trainer.tokenizer,
            prompts,
            task=args.task,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            samples_per_prompt=args.eval_samples,
            seed=args.eval_seed,
            reward=reward,
            reference=reference,
        )
    return {"step": trainer.state.step, **metrics}


def run_ppo(args: PPORecipeArgs, config: PPOConfig) -> dict:
    """Train with :meth:`PPOTrainer.train`; returns (and writes to ``config.output_dir``) the
    run's results: every step's metrics (``history``), the held-out evaluations (``evals``,
    the first being the starting policy), the arguments and the wall-clock seconds."""
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    start = time.perf_counter()
    train_prompts, eval_prompts = build_prompts(args)
    policy, tokenizer, ref = load_policy(args)
    from accelerate import PartialState

    reward = build_reward(args, device="cpu" if config.use_cpu else PartialState().device)
    trainer = PPOTrainer(
        config, policy, tokenizer, reward=reward, ref_model=ref, prompts=train_prompts
    )
    if args.resume_from_checkpoint:
        trainer.load_checkpoint(args.resume_from_checkpoint)
    record = RunRecord(
        lambda: evaluate_trainer(trainer, args, eval_prompts, reward),
        every=args.eval_every or config.max_steps,
        last=config.max_steps,
    )
    if args.task == "sentiment":
        trainer.add_callback(GoldMetrics())
    trainer.add_callback(record)
    record.evals.append(record.evaluate())  # the starting policy (or the resumed one)
    trainer.train()
    results = {
        "args": args_to_dict(args, config),
        "history": record.history,
        "evals": record.evals,
        "seconds": time.perf_counter() - start,
    }
    if config.output_dir:
        out = Path(config.output_dir)
        if args.save_policy:
            trainer.save_pretrained(str(out / "policy"))
        if trainer.accelerator.is_main_process:
            atomic_write_json(out / "ppo_results.json", results)
            if args.save_policy:
                write_policy_card(out / "policy", args, config, results)
    trainer.end_training()
    return results


def write_policy_card(
    folder: Path, args: PPORecipeArgs, config: PPOConfig, results: dict, report: str | None = None
) -> Path:
    """The saved policy's model card: what it started from, its prompts, every setting, the
    held-out figures before and after training and (the demo) the run's report."""
    if args.task == "dataset":
        data = [args.dataset_name]
    else:
        data = [f"prompts generated here ({args.task} task, {args.num_prompts} prompts)"]
    metrics = {**summarize(results, args.task), "steps": config.max_steps}
    if report is not None:  # images are linked relative to the report, not to this folder
        report = "\n".join(line for line in report.splitlines() if not line.startswith("!["))
    return write_model_card(
        folder,
        title=f"{config.estimator.upper()} policy ({args.task})",
        stage=config.estimator,
        base_model=args.model_name_or_path,
        datasets=data,
        config=args_to_dict(args, config),
        metrics=metrics,
        report=report,
    )


def summarize(results: dict, task: str) -> dict:
    """Before / after figures of a run: the first and last held-out evaluations."""
    first, last = results["evals"][0], results["evals"][-1]
    if task == "arithmetic":
        keys = ["accuracy", "accuracy_sampled"]
    else:
        keys = ["proxy", "kl_seq", "gold_mean", "gold_positive"]
    out = {}
    for key in keys:
        if key in first:
            out[f"{key}_before"], out[f"{key}_after"] = first[key], last[key]
    return out
