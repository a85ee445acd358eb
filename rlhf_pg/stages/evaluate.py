"""Offline evaluation of a policy on fixed held-out prompts: gold score, proxy reward, KL, accuracy.

``evaluate_policy(cfg)`` samples from the policy on prompts it never trained on and reports,
for the sentiment task, the mean gold (VADER) score, the share rated positive, the mean
reward-model score and the mean per-sequence KL to a reference model; for arithmetic, the
exact-match accuracy of greedy answers on the held-out problems.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..core import kl_k1
from ..utils.config import check_types, require
from ..utils.io import atomic_write_json


@dataclass
class EvalArgs:
    """What to evaluate and on which prompts (recipe YAML keys and CLI flags)."""

    task: Literal["sentiment", "arithmetic"] = "sentiment"
    model_path: str = ""
    reference_path: str | None = None  # for the KL; None: no KL
    reward_model_path: str | None = None  # proxy reward; None: not reported
    n_prompts: int = 256
    prompt_seed: int = 123  # differs from the SFT corpus and RM prompt seeds
    prompt_words: int = 4
    max_new_tokens: int = 40
    temperature: float = 1.0  # 0: greedy
    max_operand: int = 49
    held_out_fraction: float = 0.2
    split_seed: int = 0  # the arithmetic corpus seed, which fixes the held-out split
    n_samples_shown: int = 8
    seed: int = 0
    output_file: str | None = None
    num_threads: int = 0

    def __post_init__(self) -> None:
        check_types(self)
        require(self.model_path != "", self, "model_path", "must be set")
        require(self.n_prompts >= 1, self, "n_prompts", "must be >= 1")
        require(self.temperature >= 0, self, "temperature", "must be >= 0")


@torch.no_grad()
def sequence_kl(
    policy,
    reference,
    tokenizer,
    prompts: list[str],
    completion_tokens: list[list[int]],
    temperature: float = 1.0,
) -> list[float]:
    """Per-sequence k1 KL estimate, the sum over completion tokens of log pi - log pi_ref,
    both at the sampling temperature; ``completion_tokens`` are the token ids sampled from
    ``policy`` (as :func:`generate_completions` returns them), so the estimate is unbiased."""
    t = temperature if temperature > 0 else 1.0
    rows, starts = [], []
    for p, c_ids in zip(prompts, completion_tokens):
        p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        rows.append(p_ids + list(c_ids))
        starts.append(len(p_ids))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    target = ids[:, 1:]
    resp = torch.zeros_like(target, dtype=torch.bool)
    for i, (r, s) in enumerate(zip(rows, starts)):
        resp[i, s - 1 : len(r) - 1] = True

    def logprobs(model):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1] / t
        return torch.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)

    kl = kl_k1(logprobs(policy), logprobs(reference)) * resp
    return kl.sum(-1).tolist()


def evaluate_policy(cfg: EvalArgs) -> dict:
    """Metrics of ``cfg.model_path`` on held-out prompts; written to ``output_file`` if set."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..hf.sampling import generate_completions

    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
    policy = AutoModelForCausalLM.from_pretrained(cfg.model_path).eval()
    result: dict = {"model_path": cfg.model_path, "task": cfg.task}
    if cfg.task == "arithmetic":
        from ..tasks.arithmetic import arithmetic_prompts, exact_match_reward

        prompts = arithmetic_prompts(
            "held_out", cfg.max_operand, cfg.held_out_fraction, cfg.split_seed
        )
        prompts = prompts[: cfg.n_prompts]
        completions, _ = generate_completions(
            policy,
            tokenizer,
            prompts,
            max_new_tokens=6,
            temperature=cfg.temperature,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        result["heldout_accuracy"] = statistics.fmean(exact_match_reward(prompts, completions))
    else:
        from ..tasks.gold import fraction_positive, gold_reward
        from ..tasks.reviews import sentiment_prompts

        prompts = sentiment_prompts(cfg.n_prompts, seed=cfg.prompt_seed, n_words=cfg.prompt_words)
        completions, tokens = generate_completions(
            policy,
            tokenizer,
            prompts,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        gold = gold_reward(prompts, completions)
        result.update(
            gold_mean=statistics.fmean(gold), gold_positive_fraction=fraction_positive(gold)
        )
        if cfg.reward_model_path:
            from ..hf.scoring import RewardModel

            result["proxy_mean"] = statistics.fmean(
                RewardModel.from_pretrained(cfg.reward_model_path)(prompts, completions)
            )
        if cfg.reference_path:
            reference = AutoModelForCausalLM.from_pretrained(cfg.reference_path).eval()
            kls = sequence_kl(policy, reference, tokenizer, prompts, tokens, cfg.temperature)
            result["kl_per_sequence"] = statistics.fmean(kls)
    result["samples"] = [p + c for p, c in zip(prompts, completions)][: cfg.n_samples_shown]
    if cfg.output_file:
        atomic_write_json(Path(cfg.output_file), result)
    return result
