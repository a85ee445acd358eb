"""The PPO stage: load the policy, build prompts and rewards, and run
:meth:`rlhf_pg.lm.PPOTrainer.train` with two callbacks, so checkpoints (``save_every``),
resume, ``metrics.jsonl`` and trackers behave as in any other use of the trainer.

``run_ppo(args, config)`` serves the PPO recipe (``recipes/ppo.py``) and the demo alike:

- :class:`GoldMetrics` (sentiment task): ``gold/mean`` and ``gold/positive`` of each
  training batch, returned from ``on_rollout`` so the trainer logs them with the step;
- :class:`RunRecord`: every step's metrics, and the held-out evaluation
  (:func:`rlhf_pg.stages.evaluate.evaluate_policy`) before training, every ``eval_every``
  steps and after the last step; they end up in ``<output_dir>/ppo_results.json``.

The ``chat_arithmetic`` task renders its conversations with the policy's chat template and
keeps each prompt's ``answer`` (:func:`chat_arithmetic_prompts`); reward functions that
take an ``answer`` keyword get it through :func:`bind_answers`.
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..lm import PPOConfig, PPOTrainer, TrainerCallback
from ..tasks import chat_arithmetic
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


def chat_arithmetic_prompts(
    args: PPORecipeArgs, tokenizer
) -> tuple[list[str], list[str], dict[str, int]]:
    """Training and held-out conversations of the chat arithmetic task, rendered by the
    tokenizer's chat template, and each rendered prompt's ``answer``."""
    split = dict(
        max_operand=args.max_operand,
        held_out_fraction=args.held_out_fraction,
        seed=args.corpus_seed,
    )
    train = chat_arithmetic.problem_rows("train", **split, limit=args.num_prompts)
    held = chat_arithmetic.problem_rows("held_out", **split, limit=args.num_eval_prompts)
    answers = {}
    for row in train + held:
        answers[chat_arithmetic.render_prompt(tokenizer, row["prompt"])] = row["answer"]
    render = [chat_arithmetic.render_prompt(tokenizer, row["prompt"]) for row in train + held]
    return render[: len(train)], render[len(train) :], answers


def bind_answers(
    reward: list[tuple[float, Callable]], answers: dict[str, int]
) -> list[tuple[float, Callable]]:
    """Give every reward function with an ``answer`` parameter the answers of its prompts
    (looked up by the rendered prompt), as a ``(prompts, completions)`` callable."""

    def bind(fn: Callable) -> Callable:
        def with_answers(prompts: list[str], completions: list[str]) -> list[float]:
            return fn(prompts, completions, answer=[answers[p] for p in prompts])

        with_answers.__name__ = getattr(fn, "__name__", type(fn).__name__)
        return with_answers

    def takes_answer(fn: Callable) -> bool:
        try:
            return "answer" in inspect.signature(fn).parameters
        except (TypeError, ValueError):  # a builtin or a callable without a signature
            return False

    return [(w, bind(fn) if takes_answer(fn) else fn) for w, fn in reward]


def build_prompts(args: PPORecipeArgs, tokenizer=None) -> tuple[list[str], list[str]]:
    """(training prompts, held-out evaluation prompts) for the task; the chat task renders
    its conversations with ``tokenizer``."""
    if args.task == "chat_arithmetic":
        return chat_arithmetic_prompts(args, tokenizer)[:2]
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


def evaluate_trainer(
    trainer: PPOTrainer,
    args: PPORecipeArgs,
    prompts: list[str],
    reward,
    answers: list[int] | None = None,
) -> dict:
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
            answers=answers,
        )
    return {"step": trainer.state.step, **metrics}


def run_ppo(args: PPORecipeArgs, config: PPOConfig) -> dict:
    """Train with :meth:`PPOTrainer.train`; returns (and writes to ``config.output_dir``) the
    run's results: every step's metrics (``history``), the held-out evaluations (``evals``,
    the first being the starting policy), the arguments and the wall-clock seconds."""
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    start = time.perf_counter()
    policy, tokenizer, ref = load_policy(args)
    from accelerate import PartialState

    reward = build_reward(args, device="cpu" if config.cpu else PartialState().device)
    eval_answers = None
    if args.task == "chat_arithmetic":
        train_prompts, eval_prompts, answers = chat_arithmetic_prompts(args, tokenizer)
        reward = bind_answers(reward, answers)
        eval_answers = [answers[p] for p in eval_prompts]
    else:
        train_prompts, eval_prompts = build_prompts(args)
    trainer = PPOTrainer(
        config, policy, tokenizer, reward=reward, ref_model=ref, prompts=train_prompts
    )
    if args.resume_from_checkpoint:
        trainer.load_checkpoint(args.resume_from_checkpoint)
    record = RunRecord(
        lambda: evaluate_trainer(trainer, args, eval_prompts, reward, eval_answers),
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
    trainer.end_training()
    return results


def summarize(results: dict, task: str) -> dict:
    """Before / after figures of a run: the first and last held-out evaluations."""
    first, last = results["evals"][0], results["evals"][-1]
    if task in ("arithmetic", "chat_arithmetic"):
        keys = ["accuracy", "accuracy_sampled", "kl_seq"]
    else:
        keys = ["proxy", "kl_seq", "gold_mean", "gold_positive"]
    out = {}
    for key in keys:
        if key in first:
            out[f"{key}_before"], out[f"{key}_after"] = first[key], last[key]
    return out
