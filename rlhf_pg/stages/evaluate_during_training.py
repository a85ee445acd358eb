"""Held-out evaluation of a policy during PPO: proxy reward, gold score, KL to the reference,
and (arithmetic) greedy exact-match accuracy. Sampling here never disturbs training's RNG."""

from __future__ import annotations

import torch

from ..hf.sampling import generate_completions
from ..lm.advantages import per_token_kl
from ..tasks.arithmetic import exact_match_reward
from ..tasks.gold import fraction_positive, gold_reward

NUM_SAMPLES_SHOWN = 6


def _sample(trainer, prompts: list[str], seed: int):
    """A rollout of the current policy on ``prompts`` with a fixed seed (training RNG restored)."""
    devices = [trainer.device] if trainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return trainer.generate(prompts)


def evaluate_policy(
    trainer, task: str, prompts: list[str], *, samples: int = 1, seed: int = 0
) -> dict:
    """Metrics of the current policy on held-out prompts, plus a few (prompt, completion) rows."""
    result: dict = {"step": trainer.state.step}
    if task == "arithmetic":
        model = trainer.unwrapped_model.pretrained_model
        greedy, _ = generate_completions(
            model,
            trainer.tokenizer,
            prompts,
            max_new_tokens=trainer.config.max_new_tokens,
            temperature=0.0,
        )
        correct = exact_match_reward(prompts, greedy)
        result["accuracy"] = sum(correct) / len(correct)
        # the policy's own samples: RL removes the errors SFT imitated even where greedy is right
        repeated = [p for p in prompts for _ in range(samples)]
        sampled, _ = generate_completions(
            model,
            trainer.tokenizer,
            repeated,
            max_new_tokens=trainer.config.max_new_tokens,
            temperature=trainer.config.temperature,
            generator=torch.Generator().manual_seed(seed),
        )
        hits = exact_match_reward(repeated, sampled)
        result["accuracy_sampled"] = sum(hits) / len(hits)
        result["samples"] = [
            {"prompt": p, "completion": c, "correct": bool(r)}
            for p, c, r in zip(prompts, greedy, correct)
        ][:NUM_SAMPLES_SHOWN]
        return result
    rollout = _sample(trainer, [p for p in prompts for _ in range(samples)], seed)
    scores, _ = trainer.score(rollout)
    kl = per_token_kl(rollout.logprobs, rollout.ref_logprobs, rollout.response_mask, "k1")
    result["proxy"] = float(scores.mean())
    result["kl_seq"] = float(kl.sum(dim=1).mean())
    result["response_length"] = float(rollout.response_lengths.float().mean())
    rows = [{"prompt": p, "completion": c} for p, c in zip(rollout.prompts, rollout.completions)]
    if task == "sentiment":
        gold = gold_reward(list(rollout.prompts), list(rollout.completions))
        result["gold_mean"] = sum(gold) / len(gold)
        result["gold_positive"] = fraction_positive(gold)
        for row, g, s in zip(rows, gold, scores.tolist()):
            row.update(gold=g, proxy=s)
    # one row per distinct prompt, in prompt order, for the before/after table
    step = samples * trainer.config.samples_per_prompt
    result["samples"] = rows[::step][:NUM_SAMPLES_SHOWN]
    return result
