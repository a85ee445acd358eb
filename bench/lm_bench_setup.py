"""The shared starting point of the LM side-by-side benchmark (bench/lm_vs_trl.py).

Everything a trainer starts from is written to disk once and loaded by every trainer's own
process with plain ``from_pretrained``, so all of them (ours and TRL's, in either virtualenv)
begin from the very same weights, tokenizer and prompts:

- speed set-up: the offline default's tokenizer (byte-level BPE trained by
  ``rlhf_pg.tasks.train_tokenizer`` on ``rlhf_pg.tasks.build_corpus``), a random-init GPT-2 of
  4 layers x 128 dim as policy, a random-init GPT-2 scalar sequence classifier as reward
  model (and, for TRL 1.12 PPO, as the initial value model), 512 prompts of 8-16 tokens;
- learning set-up: the offline sentiment task's SFT policy and learned reward model,
  reused from (or trained into) the same cache ``rlhf-pg demo`` uses.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

N_PROMPTS = 512
PROMPT_TOKENS = (8, 16)
CORPUS_SIZE = 20000  # the offline default's (recipes/configs/sft_sentiment.yaml corpus_size)
VOCAB_SIZE = 1024  # the offline default's (recipes/configs/sft_sentiment.yaml vocab_size)


def speed_prompts(tokenizer, n: int = N_PROMPTS, seed: int = 7) -> list[str]:
    """``n`` review openings of 8-16 tokens, cut from reviews the SFT corpus never drew."""
    from rlhf_pg.tasks import build_corpus

    low, high = PROMPT_TOKENS
    rng = random.Random(seed)
    out: list[str] = []
    for text in build_corpus(20 * n, seed=seed):
        words = text.split()
        cut = " ".join(words[: rng.randint(4, min(len(words), 12))])
        if low <= len(tokenizer(cut)["input_ids"]) <= high:
            out.append(cut)
        if len(out) == n:
            return out
    raise RuntimeError(f"only {len(out)} prompts of {low}-{high} tokens found")


def build_speed_artifacts(workdir: Path, seed: int = 0) -> dict[str, str]:
    """Write tokenizer + policy, reward model and prompts under ``workdir``; returns the paths."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    from rlhf_pg.tasks import build_corpus, train_tokenizer

    paths = {
        "policy": str(workdir / "policy"),
        "reward": str(workdir / "reward"),
        "prompts": str(workdir / "prompts.json"),
    }
    if all(Path(p).exists() for p in paths.values()):
        return paths
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(build_corpus(CORPUS_SIZE, seed=0), VOCAB_SIZE)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=128,
        n_layer=4,
        n_head=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    policy = GPT2LMHeadModel(config)
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    policy.generation_config.eos_token_id = tokenizer.eos_token_id
    reward = GPT2ForSequenceClassification(config)
    for model, key in ((policy, "policy"), (reward, "reward")):
        model.save_pretrained(paths[key])
        tokenizer.save_pretrained(paths[key])
    Path(paths["prompts"]).write_text(json.dumps(speed_prompts(tokenizer)))
    return paths


def build_learning_artifacts(
    progress: bool = False, cache_dir: str | None = None, overrides: dict | None = None
) -> dict[str, str]:
    """SFT policy and learned reward model of the offline sentiment task: the demo's stages
    (the recipe YAMLs it composes) and its cache. ``cache_dir`` / ``overrides`` (DemoConfig
    fields, e.g. ``{"sft": {"max_steps": 20}}``) are for smoke runs with tiny models."""
    from rlhf_pg.demo.pipeline import DemoConfig, rm_args, sft_args
    from rlhf_pg.stages.reward_model import train_reward_model
    from rlhf_pg.stages.sft import train_sft

    cfg = DemoConfig(progress=progress, cache_dir=cache_dir, **(overrides or {}))
    sft = train_sft(sft_args(cfg))
    rm = train_reward_model(rm_args(cfg, sft))
    return {"policy": str(sft), "reward": str(rm)}


def learning_prompts(n: int = 2048) -> tuple[list[str], list[str]]:
    """(training prompts, held-out prompts) of the sentiment task, as the PPO recipe makes them."""
    from dataclasses import fields

    from rlhf_pg.stages.ppo_args import PPORecipeArgs
    from rlhf_pg.tasks import sentiment_prompts

    default = {f.name: f.default for f in fields(PPORecipeArgs)}
    words = default["prompt_words"]
    train = sentiment_prompts(n, seed=default["prompt_seed"], n_words=words)
    held = sentiment_prompts(128, seed=default["eval_seed"], n_words=words)
    return train, held
