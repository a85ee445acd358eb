"""The PPO stage: load the policy, build prompts and rewards, and run
:meth:`rlhf_pg.lm.PPOTrainer.train` with two callbacks, so checkpoints (``save_every``),
resume, ``metrics.jsonl`` and trackers behave as in any other use of the trainer.

``run_ppo(args, config)`` serves the PPO recipe (``recipes/ppo.py``) and the demo alike:

- :class:`GoldMetrics` (sentiment task): ``gold/mean`` and ``gold/positive`` of each
  training batch, returned from ``on_rollout`` so the trainer logs them with the step;
- :class:`RunRecord`: every step's metrics, and the held-out evaluation
  (:func:`rlhf_pg.stages.evaluate.evaluate_policy`: reward and each component, response
  length, EOS rate, KL) before training, every ``eval_every`` steps and after the last step;
  they end up in ``<output_dir>/ppo_results.json``, with each evaluation's completions table
  (prompt, completion, each reward component) appended to ``<output_dir>/completions.jsonl``
  and, with the ``eval/*`` scalars, sent to the trackers (:func:`publish_evaluation`).

Prompts come from the task (generated reviews, sums, or sums asked in conversations with an
``answer`` column, which the ``answer_exact_match`` reward reads) or from a prompt dataset
(``task: dataset``: ``dataset_name`` / ``dataset_config`` / ``dataset_train_split`` /
``dataset_test_split``, a ``prompt_column`` of strings or conversations), checked with the
tokenizer and the reward function's arguments before any model is loaded.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..hf.hub import write_model_card
from ..lm import CombinedReward, PPOConfig, PPOTrainer, TrainerCallback
from ..lm.engines import check_launcher, full_weights
from ..lm.prompts import PromptRows, as_prompt_rows
from ..tasks import chat_arithmetic
from ..tasks.arithmetic import arithmetic_prompts
from ..tasks.gold import fraction_positive, gold_reward
from ..tasks.reviews import sentiment_prompts
from ..utils.config import ConfigError
from ..utils.io import append_jsonl, atomic_write_json, filter_jsonl
from .evaluate import PeftReference, evaluate_policy
from .ppo_args import PPORecipeArgs, args_to_dict
from .rewards import TEXT_ONLY_REWARDS, build_reward, resolve_reward_fn

COMPLETIONS_FILE = "completions.jsonl"  # every evaluation's completions table, one row a line


def load_tokenizer(args: PPORecipeArgs):
    """The policy's tokenizer (left padding), via ``from_pretrained``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        args.tokenizer_name_or_path or args.model_name_or_path,
        padding_side="left",
        trust_remote_code=args.trust_remote_code,
    )


def load_policy(args: PPORecipeArgs):
    """Policy and optional separate reference, via ``from_pretrained``."""
    from transformers import AutoModelForCausalLM

    remote = args.trust_remote_code
    policy = AutoModelForCausalLM.from_pretrained(args.model_name_or_path, trust_remote_code=remote)
    ref = None
    if args.ref_model_name_or_path is not None:
        ref = AutoModelForCausalLM.from_pretrained(
            args.ref_model_name_or_path, trust_remote_code=remote
        )
    return policy, ref


def dataset_prompts(args: PPORecipeArgs, tokenizer) -> tuple[PromptRows, PromptRows]:
    """(training rows, evaluation rows) of a prompt dataset: ``num_prompts`` rows of
    ``dataset_train_split`` and ``num_eval_prompts`` of ``dataset_test_split`` (or, without
    one, the first rows of the training split, held out). Bad data is a ConfigError."""
    from ..tasks.datasets import load_any_dataset

    name, config = args.dataset_name, args.dataset_config
    train = load_any_dataset(name, args.dataset_train_split, config)
    if args.dataset_test_split is not None:
        test = load_any_dataset(name, args.dataset_test_split, config)
    else:
        n_eval = min(args.num_eval_prompts, len(train) // 2)
        test, train = train.select(range(n_eval)), train.select(range(n_eval, len(train)))
    train = train.select(range(min(args.num_prompts, len(train))))
    test = test.select(range(min(args.num_eval_prompts, len(test))))
    try:
        rows = tuple(as_prompt_rows(d, tokenizer, args.prompt_column) for d in (train, test))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"dataset {name!r}: {err}") from None
    test_name = args.dataset_test_split or f"{args.dataset_train_split} (held-out rows)"
    for split, part in zip((args.dataset_train_split, test_name), rows):
        if len(part) == 0:
            raise ConfigError(f"dataset {name!r}: split {split!r} gave no prompts")
    return rows


def build_prompts(args: PPORecipeArgs, tokenizer) -> tuple[PromptRows, PromptRows]:
    """(training prompts, held-out evaluation prompts) for the task, checked against the
    tokenizer (a conversation needs its chat template)."""
    if args.task == "dataset" and args.text_column is None:
        return dataset_prompts(args, tokenizer)
    if args.task == "chat_arithmetic":  # conversations + answer column, as a user's dataset
        split = (args.max_operand, args.held_out_fraction, args.corpus_seed)
        train = chat_arithmetic.problem_rows("train", *split, limit=args.num_prompts)
        held = chat_arithmetic.problem_rows("held_out", *split, limit=args.num_eval_prompts)
        return as_prompt_rows(train, tokenizer), as_prompt_rows(held, tokenizer)
    train, held = _text_prompts(args)
    return as_prompt_rows(train, tokenizer), as_prompt_rows(held, tokenizer)


def _text_prompts(args: PPORecipeArgs) -> tuple[list[str], list[str]]:
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
        args.dataset_train_split,
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
    ``every``-th step and after step ``last`` (``evals``); each evaluation's completions
    table goes to ``publish`` instead."""

    def __init__(
        self,
        evaluate: Callable[[], dict],
        every: int,
        last: int,
        publish: Callable[[dict, list[dict]], None] = lambda result, table: None,
    ) -> None:
        self.evaluate, self.every, self.last, self.publish = evaluate, every, last, publish
        self.history: list[dict] = []
        self.evals: list[dict] = []

    def run_evaluation(self) -> None:
        result = self.evaluate()
        self.publish(result, result.pop("completions", []))
        self.evals.append(result)

    def on_step_end(self, trainer, metrics: dict[str, float]) -> None:
        step = trainer.state.step
        self.history.append({"step": step, **metrics})
        if step % self.every == 0 or step == self.last:
            self.run_evaluation()


def log_table(accelerator, name: str, rows: list[dict], step: int) -> None:
    """A table to every tracker that can show one (W&B, ClearML: ``log_table``); the others
    (TensorBoard, trackio) have no table and are skipped. Cells that are not scalars or
    strings (a conversation) are shown as JSON."""
    trackers = [t for t in accelerator.trackers if hasattr(t, "log_table")]
    if not rows or not trackers or not accelerator.is_main_process:
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(v):
        return v if v is None or isinstance(v, (str, int, float)) else json.dumps(v)

    data = [[cell(row.get(c)) for c in columns] for row in rows]
    for tracker in trackers:
        tracker.log_table(table_name=name, columns=columns, data=data, step=step)


def publish_evaluation(trainer: PPOTrainer, result: dict, table: list[dict]) -> None:
    """An evaluation's completions table (prompt, completion, total and each reward
    component, KL) appended to ``<output_dir>/completions.jsonl`` with its step, and its
    scalars (``eval/*``) and the table sent to the trackers; main process only."""
    acc, step = trainer.accelerator, result["step"]
    if not acc.is_main_process:
        return
    if trainer.config.output_dir:
        rows = [{"step": step, **row} for row in table]
        append_jsonl(Path(trainer.config.output_dir) / COMPLETIONS_FILE, rows)
    if acc.trackers:
        scalars = {
            f"eval/{k}": v
            for k, v in result.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        acc.log(scalars, step=step)
        log_table(acc, "eval/completions", table, step)


def evaluate_trainer(
    trainer: PPOTrainer, args: PPORecipeArgs, prompts: PromptRows | list[str], reward
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
    # sharded engines (ZeRO-3, FSDP2): the full policy for the whole evaluation, every process
    with full_weights(trainer.accelerator, trainer.model), trainer.accelerator.autocast():
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
            with_table=True,
        )
    return {"step": trainer.state.step, **metrics}


def run_ppo(args: PPORecipeArgs, config: PPOConfig) -> dict:
    """Train with :meth:`PPOTrainer.train`; returns (and writes to ``config.output_dir``) the
    run's results: every step's metrics (``history``), the held-out evaluations (``evals``,
    the first being the starting policy), the arguments and the wall-clock seconds."""
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    start = time.perf_counter()
    check_launcher(cpu=config.use_cpu)  # an engine that cannot run here (FSDP on CPU): one line
    # 1. data and reward function checked before any model is loaded
    tokenizer = load_tokenizer(args)
    train_prompts, eval_prompts = build_prompts(args, tokenizer)
    reward_fn = resolve_reward_fn(args.reward_fn)
    if args.reward_fn in TEXT_ONLY_REWARDS and train_prompts.conversational:
        raise ConfigError(
            f"reward_fn={args.reward_fn!r} reads text prompts, but {args.prompt_column!r} holds "
            "conversations; give your own reward_fn=module:function taking (prompts, "
            "completions, <columns>) or a reward_model_path"
        )
    if reward_fn is not None:
        try:
            CombinedReward(reward_fn).check_arguments(list(train_prompts.columns))
        except ValueError as err:
            raise ConfigError(str(err)) from None
    # 2. the models
    policy, ref = load_policy(args)
    from accelerate import PartialState

    reward = build_reward(args, device="cpu" if config.use_cpu else PartialState().device)
    trainer = PPOTrainer(
        config, policy, tokenizer, reward=reward, ref_model=ref, prompts=train_prompts
    )
    if args.resume_from_checkpoint:
        trainer.load_checkpoint(args.resume_from_checkpoint)
        if config.output_dir and trainer.accelerator.is_main_process:
            # as metrics.jsonl, minus the checkpoint's own step: the resumed run evaluates it
            step = trainer.state.step
            filter_jsonl(Path(config.output_dir) / COMPLETIONS_FILE, lambda r: r["step"] < step)
    else:
        trainer.writer.start_run()  # refuse (or clear) a used output_dir before writing to it
    record = RunRecord(
        lambda: evaluate_trainer(trainer, args, eval_prompts, reward),
        every=args.eval_every or config.max_steps,
        last=config.max_steps,
        publish=lambda result, table: publish_evaluation(trainer, result, table),
    )
    if args.task == "sentiment":
        trainer.add_callback(GoldMetrics())
    trainer.add_callback(record)
    record.run_evaluation()  # the starting policy (or the resumed one)
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
        library_name="peft" if config.use_lora else "transformers",
    )


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
