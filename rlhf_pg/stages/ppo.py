"""The PPO stage: load the policy, build prompts and rewards, train with the step-wise API of
:class:`rlhf_pg.lm.PPOTrainer`, and evaluate on held-out prompts as training goes.

``run_ppo(args, config)`` serves the PPO recipe (``recipes/ppo.py``) and the demo alike.
The loop reads as the algorithm::

    rollout = trainer.generate(prompts)     # sample from the policy
    scores, parts = trainer.score(rollout)  # reward model and/or reward callables
    metrics = trainer.step(rollout, scores) # KL-shaped rewards -> advantages -> PPO epochs
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..lm import PPOConfig, PPOTrainer
from ..tasks.gold import fraction_positive, gold_reward
from ..utils.io import atomic_write_json
from .evaluate_during_training import evaluate_policy
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
        from ..tasks.reviews import sentiment_prompts

        train = sentiment_prompts(
            args.num_prompts, seed=args.prompt_seed, n_words=args.prompt_words
        )
        held = sentiment_prompts(
            args.num_eval_prompts, seed=args.eval_seed, n_words=args.prompt_words
        )
        return train, held
    if args.task == "arithmetic":
        from ..tasks.arithmetic import arithmetic_prompts

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


class PromptSampler:
    """Shuffled passes over the prompt list; each process takes its share of a global batch."""

    def __init__(self, prompts: list[str], batch_size: int, rank: int, world: int, seed: int):
        self.prompts, self.batch_size, self.rank, self.world = prompts, batch_size, rank, world
        self.rng = random.Random(seed)  # same on every rank, so shares never overlap
        self.order: list[int] = []

    def next(self) -> list[str]:
        need = self.batch_size * self.world
        while len(self.order) < need:
            perm = list(range(len(self.prompts)))
            self.rng.shuffle(perm)
            self.order += perm
        batch, self.order = self.order[:need], self.order[need:]
        mine = batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return [self.prompts[i] for i in mine]


def run_ppo(
    args: PPORecipeArgs,
    config: PPOConfig,
    *,
    on_step: Callable[[dict], None] | None = None,
    show_progress: bool | None = None,
) -> dict:
    """Train and evaluate; returns (and writes to ``config.output_dir``) the run's results.

    The results hold every step's metrics (``history``), the held-out evaluations
    (``evals``, including step 0 = the starting policy) and the arguments.
    """
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    start = time.perf_counter()
    train_prompts, eval_prompts = build_prompts(args)
    policy, tokenizer, ref = load_policy(args)
    from accelerate import PartialState

    reward = build_reward(args, device="cpu" if config.cpu else PartialState().device)
    trainer = PPOTrainer(config, policy, tokenizer, reward=reward, ref_model=ref)
    acc = trainer.accelerator
    sampler = PromptSampler(
        train_prompts, config.batch_size, acc.process_index, acc.num_processes, config.seed
    )
    every = args.eval_every or config.max_steps

    def evaluate() -> dict:
        return evaluate_policy(
            trainer, args.task, eval_prompts, samples=args.eval_samples, seed=args.eval_seed
        )

    evals, history = [evaluate()], []
    show = config.progress_bar if show_progress is None else show_progress
    bar = tqdm(
        total=config.max_steps,
        desc=f"{config.estimator} ({args.task})",
        disable=not (show and acc.is_local_main_process),
    )
    for step in range(1, config.max_steps + 1):
        rollout = trainer.generate(sampler.next())
        scores, parts = trainer.score(rollout)
        metrics = trainer.step(rollout, scores)
        if args.task == "sentiment":
            gold = gold_reward(list(rollout.prompts), list(rollout.completions))
            metrics["gold/mean"] = sum(gold) / len(gold)
            metrics["gold/positive"] = fraction_positive(gold)
        for name, part in parts.items():
            metrics[f"reward/{name}"] = trainer.global_mean(part)
        history.append({"step": step, **metrics})
        if step % every == 0 or step == config.max_steps:
            evals.append(evaluate())
        bar.update(1)
        bar.set_postfix(score=f"{metrics['score/mean']:.3f}", kl=f"{metrics['kl/seq']:.2f}")
        if on_step is not None:
            on_step(history[-1])
    bar.close()
    results = {
        "args": args_to_dict(args, config),
        "history": history,
        "evals": evals,
        "seconds": time.perf_counter() - start,
    }
    if config.output_dir:
        out = Path(config.output_dir)
        if args.save_policy:
            trainer.save_pretrained(str(out / "policy"))
        if acc.is_main_process:
            atomic_write_json(out / "ppo_results.json", results)
    trainer.end_training()
    return results


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
