"""Held-out evaluation of a policy: the one evaluation of the project.

:func:`evaluate_policy` samples from a policy on prompts it never trained on and reports one
set of metrics, whoever calls it (the evaluate recipe through :func:`run_evaluation`, the PPO
stage every ``eval_every`` steps, benchmarks):

==================== ===========================================================
``gold_mean``        sentiment: mean gold (VADER compound) score of prompt + completion
``gold_positive``    sentiment: share of samples the gold scorer calls positive
``proxy``            mean reward (reward model and/or callables), if a reward is given
``kl_seq``           mean per-sequence k1 KL to the reference, if a reference is given
``response_length``  mean completion length in tokens (stop token included)
``eos_rate``         share of completions that ended with EOS (not cut at the length limit)
``reward/<name>``    each reward component's mean over the completions it applies to
``accuracy``         arithmetic tasks: exact-match accuracy of greedy answers
``accuracy_sampled`` arithmetic tasks: exact-match accuracy of the samples
``samples``          a few rows ``{prompt, completion, ...}``, one per distinct prompt
``completions``      with ``with_table=True``: every sample's row ``{prompt, completion,
                     proxy, reward/<name>, kl, ...}`` (None: that reward does not apply)
==================== ===========================================================

``prompts`` are strings or a prompt dataset (:func:`rlhf_pg.lm.prompts.as_prompt_rows`):
conversations are sampled after their chat template, as in training, and the rewards get the
rows' other columns, as in training.

Sampling goes through :mod:`rlhf_pg.hf.sampling` with a ``torch.Generator`` seeded from
``seed``: the same seed gives the same samples, and the global RNG (CPU and CUDA) that
training draws from is never touched. The KL takes one path: policy and reference
log-probs of the sampled tokens from :func:`rlhf_pg.lm.rollout.response_forward`, the
forward pass the trainer's own rollout uses.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ..core import kl_k1
from ..hf.sampling import generate_completions
from ..hf.scoring import RewardModel
from ..hf.tokens import encode_prompts, left_pad
from ..lm.prompts import PromptRows, as_prompt_rows
from ..lm.rewards import CombinedReward, RewardSpec
from ..lm.rollout import Rollout, response_forward
from ..tasks import chat_arithmetic
from ..tasks.arithmetic import arithmetic_prompts, exact_match_reward
from ..tasks.gold import fraction_positive, gold_reward
from ..tasks.reviews import sentiment_prompts
from ..utils.config import check_types, require, require_model_path
from ..utils.io import atomic_write_json

TASKS = ("sentiment", "arithmetic", "chat_arithmetic", "dataset")


@dataclass
class EvalArgs:
    """What to evaluate and on which prompts (recipe YAML keys and CLI flags)."""

    task: Literal["sentiment", "arithmetic", "chat_arithmetic"] = field(
        default="sentiment",
        metadata={"help": "which held-out prompts and metrics (chat_arithmetic: conversations)"},
    )
    model_path: str = field(default="", metadata={"help": "the policy to evaluate (a folder)"})
    reference_path: str | None = field(
        default=None, metadata={"help": "reference model for the KL (none: no KL)"}
    )
    reward_model_path: str | None = field(
        default=None, metadata={"help": "reward model for the proxy reward (none: not reported)"}
    )
    n_prompts: int = field(default=256, metadata={"help": "held-out prompts"})
    samples_per_prompt: int = field(default=1, metadata={"help": "completions per prompt"})
    prompt_seed: int = field(
        default=123,
        metadata={"help": "seed of the generated prompts (differs from the SFT and RM seeds)"},
    )
    prompt_words: int = field(default=4, metadata={"help": "sentiment: first N words of a review"})
    max_new_tokens: int = field(default=40, metadata={"help": "completion length limit"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (0: greedy)"})
    max_operand: int = field(
        default=49, metadata={"help": "arithmetic tasks: as in the SFT corpus"}
    )
    held_out_fraction: float = field(
        default=0.2, metadata={"help": "arithmetic tasks: held-out share of the sums, as in SFT"}
    )
    split_seed: int = field(
        default=0,
        metadata={"help": "arithmetic tasks: the SFT corpus seed, which fixes the held-out split"},
    )
    n_samples_shown: int = field(default=8, metadata={"help": "completions shown in the result"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    output_file: str | None = field(
        default=None, metadata={"help": "also write the result as JSON here (none: only print)"}
    )
    num_threads: int = field(default=0, metadata={"help": "torch threads; 0 keeps the default"})

    def __post_init__(self) -> None:
        check_types(self)
        require(self.model_path != "", self, "model_path", "must be set")
        for name in ("n_prompts", "samples_per_prompt", "max_new_tokens"):
            require(getattr(self, name) >= 1, self, name, "must be >= 1")
        require(self.temperature >= 0, self, "temperature", "must be >= 0")
        require(self.num_threads >= 0, self, "num_threads", "must be >= 0")
        made_by = (
            "the stage that trains it (recipes/sft.py, recipes/ppo.py or recipes/reward_model.py)"
        )
        for name in ("model_path", "reference_path", "reward_model_path"):
            require_model_path(self, name, made_by)


class PeftReference:
    """The KL reference of a peft (LoRA) policy, as the trainer's: the base with the frozen
    ``reference`` adapter (training started from an SFT adapter) or, when there is none,
    the base with every adapter disabled."""

    def __init__(self, peft_model, adapter_name: str | None = None) -> None:
        self.model = peft_model
        self.adapter_name = adapter_name

    def __call__(self, **kwargs: Any):
        if self.adapter_name is not None:  # peft's per-row adapter choice; no state change
            rows = kwargs["input_ids"].shape[0]
            return self.model(**kwargs, adapter_names=[self.adapter_name] * rows)
        with self.model.disable_adapter():
            return self.model(**kwargs)


def _module(model) -> torch.nn.Module:
    return model.model if isinstance(model, PeftReference) else model


@contextlib.contextmanager
def eval_mode(*models) -> Iterator[None]:
    """Dropout off for the body (the log-probs must be the sampling policy's); each model's
    train/eval mode is restored afterwards, so a trainer's model comes back as it was."""
    modules = [_module(m) for m in models]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def token_batch(
    tokenizer,
    prompts: Sequence[str],
    completion_tokens: Sequence[Sequence[int]],
    add_special_tokens: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Left-padded prompts and right-padded responses, in the rollout's layout, from the
    token ids :func:`~rlhf_pg.hf.sampling.generate_completions` returns (prompts encoded the
    same way it encodes them)."""
    encoded = encode_prompts(
        tokenizer, list(prompts), max_length=10**9, add_special_tokens=add_special_tokens
    )
    query_ids, query_mask = left_pad(encoded, tokenizer.pad_token_id)
    width = max(1, max(len(c) for c in completion_tokens))
    response_ids = torch.full((len(prompts), width), tokenizer.pad_token_id, dtype=torch.long)
    response_mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, c in enumerate(completion_tokens):
        if len(c):
            response_ids[i, : len(c)] = torch.as_tensor(list(c), dtype=torch.long)
            response_mask[i, : len(c)] = True
    return query_ids, query_mask, response_ids, response_mask


@torch.no_grad()
def sequence_kl(
    policy,
    reference,
    tokenizer,
    prompts: Sequence[str],
    completion_tokens: Sequence[Sequence[int]],
    temperature: float = 1.0,
    batch_size: int = 64,
    add_special_tokens: bool = True,
) -> list[float]:
    """Per-sequence k1 KL estimate, the sum over completion tokens of log pi - log pi_ref,
    both under logits / temperature (1 for greedy). ``completion_tokens`` are token ids
    sampled from ``policy``, so the estimate is unbiased for KL(policy || reference)."""
    t = temperature if temperature > 0 else 1.0
    device = next(_module(policy).parameters()).device
    out: list[float] = []
    with eval_mode(policy, reference):
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            tensors = token_batch(
                tokenizer, prompts[chunk], completion_tokens[chunk], add_special_tokens
            )
            tensors = tuple(x.to(device) for x in tensors)
            logprobs, _, _ = response_forward(policy, *tensors, temperature=t)
            ref_logprobs, _, _ = response_forward(reference, *tensors, temperature=t)
            out += (kl_k1(logprobs, ref_logprobs) * tensors[3]).sum(dim=1).tolist()
    return out


def proxy_scores(
    reward: RewardSpec,
    tokenizer,
    prompts: Sequence[str] | PromptRows,
    completions: list[str],
    completion_tokens: Sequence[Sequence[int]],
) -> tuple[list[float], dict[str, list[float | None]]]:
    """The reward of sampled completions and each component's scores (None where it does
    not apply), scored as the trainer scores a rollout: a reward model sharing the policy's
    vocabulary reads the tokens, anything else the text, with the rows' other columns."""
    scorer = reward if isinstance(reward, CombinedReward) else CombinedReward(reward)
    rows = as_prompt_rows(prompts, tokenizer)
    ids = token_batch(tokenizer, rows.texts, completion_tokens, rows.add_special_tokens)
    eos = tokenizer.eos_token_id
    has_stop = torch.tensor([len(t) > 0 and t[-1] == eos for t in completion_tokens])
    rollout = Rollout(
        *ids, rows.texts, completions, has_stop,
        conversations=rows.conversations, columns=rows.columns,
    )  # fmt: skip
    scores, parts = scorer(rollout, tokenizer)
    components = {
        name: [None if math.isnan(v) else v for v in part.tolist()] for name, part in parts.items()
    }
    return scores.tolist(), components


def _applicable_mean(values: list[float | None]) -> float | None:
    scored = [v for v in values if v is not None]
    return statistics.fmean(scored) if scored else None


def arithmetic_accuracy(
    prompts: list,
    greedy: list[str],
    sampled: list[str],
    k: int,
    n_shown: int,
    answers: Sequence | None = None,
) -> dict:
    """Exact-match accuracy of the greedy answers and of the ``k`` samples per prompt; the
    rows shown are the greedy answers. With ``answers`` (one per prompt: the chat task's
    answer column) a reply must state that answer; without, the sum solved from an
    ``"a+b="`` prompt."""
    repeated = [p for p in prompts for _ in range(k)]
    if answers is None:
        correct = exact_match_reward(prompts, greedy)
        correct_sampled = exact_match_reward(repeated, sampled)
    else:
        correct = chat_arithmetic.answer_exact_match(prompts, greedy, answer=list(answers))
        repeated_answers = [a for a in answers for _ in range(k)]
        correct_sampled = chat_arithmetic.answer_exact_match(
            repeated, sampled, answer=repeated_answers
        )
    rows = [
        {"prompt": p, "completion": c, "correct": bool(r)}
        for p, c, r in zip(prompts, greedy, correct)
    ]
    return {
        "accuracy": statistics.fmean(correct),
        "accuracy_sampled": statistics.fmean(correct_sampled),
        "samples": rows[:n_shown],
    }


@torch.no_grad()
def evaluate_policy(
    policy,
    tokenizer,
    prompts: Sequence[str] | PromptRows,
    *,
    task: str,
    max_new_tokens: int,
    temperature: float = 1.0,
    samples_per_prompt: int = 1,
    seed: int = 0,
    reward: RewardSpec | None = None,
    reference=None,
    n_samples_shown: int = 6,
    batch_size: int = 64,
    with_table: bool = False,
) -> dict:
    """Metrics of ``policy`` (a causal LM) on held-out ``prompts`` (keys in the module doc).

    ``samples_per_prompt`` completions per prompt are drawn at ``temperature`` from a
    generator seeded with ``seed``. ``reward`` (anything :class:`rlhf_pg.lm.PPOTrainer`
    takes) gives ``proxy``; ``reference`` (a causal LM, or :class:`PeftReference`) gives
    ``kl_seq``. Neither the global RNG nor the policy's train/eval mode is changed.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not valid; choose one of {', '.join(TASKS)}")
    data, k = as_prompt_rows(prompts, tokenizer), samples_per_prompt
    if task == "chat_arithmetic" and "answer" not in data.columns:
        raise ValueError(
            f"task chat_arithmetic scores replies against an 'answer' column; the prompt rows "
            f"have {sorted(data.columns)}"
        )
    prompts, special = data.texts, data.add_special_tokens
    repeated_rows = data.repeat(k)
    repeated = repeated_rows.texts
    kw = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, add_special_tokens=special)
    gen = torch.Generator().manual_seed(seed)
    completions, tokens = generate_completions(
        policy, tokenizer, repeated, temperature=temperature, generator=gen, **kw
    )
    eos = tokenizer.eos_token_id
    result: dict = {
        "response_length": statistics.fmean(len(t) for t in tokens),
        "eos_rate": statistics.fmean(float(len(t) > 0 and t[-1] == eos) for t in tokens),
    }
    shown = repeated_rows.conversations or repeated  # a conversation is shown as one
    rows = [{"prompt": p, "completion": c} for p, c in zip(shown, completions)]
    if reward is not None:
        scores, components = proxy_scores(reward, tokenizer, repeated_rows, completions, tokens)
        result["proxy"] = statistics.fmean(scores)
        for row, s in zip(rows, scores):
            row["proxy"] = s
        for name, values in components.items():
            result[f"reward/{name}"] = _applicable_mean(values)
            for row, v in zip(rows, values):
                row[f"reward/{name}"] = v
    if reference is not None:
        kls = sequence_kl(
            policy, reference, tokenizer, repeated, tokens, temperature, batch_size, special
        )
        result["kl_seq"] = statistics.fmean(kls)
        for row, kl in zip(rows, kls):
            row["kl"] = kl
    if task == "sentiment":
        gold = gold_reward(repeated, completions)
        result.update(gold_mean=statistics.fmean(gold), gold_positive=fraction_positive(gold))
        for row, g in zip(rows, gold):
            row["gold"] = g
    result["samples"] = rows[::k][:n_samples_shown]  # one row per distinct prompt
    if with_table:
        result["completions"] = rows
    if task in ("arithmetic", "chat_arithmetic"):
        greedy, _ = generate_completions(policy, tokenizer, prompts, temperature=0.0, **kw)
        answers = data.columns.get("answer") if task == "chat_arithmetic" else None
        shown = data.conversations or prompts
        result.update(arithmetic_accuracy(shown, greedy, completions, k, n_samples_shown, answers))
    return result


def eval_prompts(args: EvalArgs) -> list:
    """The held-out prompts an :class:`EvalArgs` names (for the chat task, rows of a
    conversation and its answer)."""
    if args.task == "chat_arithmetic":
        split = (args.max_operand, args.held_out_fraction, args.split_seed)
        return chat_arithmetic.problem_rows("held_out", *split, limit=args.n_prompts)
    if args.task == "arithmetic":
        held = arithmetic_prompts(
            "held_out", args.max_operand, args.held_out_fraction, args.split_seed
        )
        return held[: args.n_prompts]
    return sentiment_prompts(args.n_prompts, seed=args.prompt_seed, n_words=args.prompt_words)


def run_evaluation(args: EvalArgs) -> dict:
    """The evaluate recipe: load the models by path, evaluate, write ``output_file`` if set."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model_path, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(args.model_path).eval()
    reference = None
    if args.reference_path:
        reference = AutoModelForCausalLM.from_pretrained(args.reference_path).eval()
    reward = None
    if args.reward_model_path:
        reward = RewardModel.from_pretrained(args.reward_model_path)
    metrics = evaluate_policy(
        policy,
        tokenizer,
        eval_prompts(args),
        task=args.task,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        samples_per_prompt=args.samples_per_prompt,
        seed=args.seed,
        reward=reward,
        reference=reference,
        n_samples_shown=args.n_samples_shown,
    )
    result = {"model_path": args.model_path, "task": args.task, **metrics}
    if args.output_file:
        atomic_write_json(Path(args.output_file), result)
    return result
