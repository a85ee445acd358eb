"""Batched sampling from a causal LM for offline data and evaluation (not the PPO rollout).

Prompts are left-padded (the tokenizer's padding side), completions are cut at the first
EOS and decoded without special tokens. Used to make preference pairs from the SFT model
and to measure arithmetic accuracy.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


@torch.no_grad()
def generate_completions(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
    return_tokens: bool = False,
) -> list[str] | tuple[list[str], list[list[int]]]:
    """One completion per prompt; ``temperature=0`` decodes greedily. With ``return_tokens``
    also the sampled token ids of each completion (ending with EOS where it stopped)."""
    if tokenizer.padding_side != "left":
        raise ValueError(
            f"generate_completions: tokenizer.padding_side must be 'left', got {tokenizer.padding_side!r}"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    out: list[str] = []
    tokens: list[list[int]] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="generate", disable=not progress, leave=False):
        chunk = prompts[start : start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(
            device
        )
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        gen = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **(sampling if temperature > 0 else {"do_sample": False}),
        )
        new = gen[:, enc["input_ids"].shape[1] :]
        for row in new.tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id) + 1]
            else:  # hit max_new_tokens: drop only trailing padding
                while row and row[-1] == tokenizer.pad_token_id:
                    row.pop()
            tokens.append(row)
            out.append(tokenizer.decode(row, skip_special_tokens=True))
    model.train(was_training)
    return (out, tokens) if return_tokens else out
