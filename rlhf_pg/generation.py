"""Batched sampling from a causal LM for offline data and evaluation (not the PPO rollout).

Prompts are left-padded with position ids from the mask and completions are cut after the
first EOS, with the same helpers as the PPO rollout (``rlhf_pg.lm.rollout``), then decoded
without special tokens. Used to make preference pairs from the SFT model
and to measure arithmetic accuracy.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .lm.rollout import left_pad, position_ids, truncate_at_stop


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
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    out: list[str] = []
    tokens: list[list[int]] = []
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="generate", disable=not progress, leave=False):
        chunk = tokenizer(prompts[start : start + batch_size], add_special_tokens=False)
        query_ids, query_mask = left_pad(chunk["input_ids"], pad)
        query_ids, query_mask = query_ids.to(device), query_mask.to(device)
        gen = model.generate(
            input_ids=query_ids,
            attention_mask=query_mask.long(),
            position_ids=position_ids(query_mask),
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=eos,
            **(sampling if temperature > 0 else {"do_sample": False}),
        )
        # the same stop-token truncation as the PPO rollout: keep up to and including EOS
        ids, mask, _ = truncate_at_stop(gen[:, query_ids.shape[1] :], [eos], pad)
        for row, valid in zip(ids, mask):
            kept = row[valid].tolist()
            tokens.append(kept)
            out.append(tokenizer.decode(kept, skip_special_tokens=True))
    model.train(was_training)
    return (out, tokens) if return_tokens else out
