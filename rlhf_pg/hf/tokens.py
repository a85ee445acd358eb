"""Token plumbing shared by every stage: pad token, prompt encoding, padding, positions,
stop-token truncation and decoding.

Layout used everywhere: a sequence is a LEFT-padded prompt (``query_ids``, width P)
followed by a RIGHT-padded response (``response_ids``, width R). Position ids come from the
attention mask, so a left-padded row sees exactly the positions it would see unpadded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

PAD_TOKEN = "<|pad|>"


def ensure_pad_token(tokenizer, model=None) -> bool:
    """Give the tokenizer a pad token distinct from EOS (adding one if needed) and make
    the model's embeddings large enough for it. Returns True when a token was added."""
    added = False
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        added = True
    if model is not None:
        base = getattr(model, "pretrained_model", model)  # a policy wrapper or the LM itself
        emb = base.get_input_embeddings()
        if emb.num_embeddings < len(tokenizer):
            base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        for cfg in (base.config, getattr(base, "generation_config", None)):
            if cfg is not None:
                cfg.pad_token_id = tokenizer.pad_token_id
    return added


def encode_prompts(
    tokenizer,
    prompts: Sequence[str],
    *,
    max_length: int,
    truncation: str = "error",
    add_special_tokens: bool = True,
) -> list[list[int]]:
    """Token ids of each prompt, checked: non-empty list of non-empty strings within the limit.

    ``add_special_tokens=False`` for text a chat template rendered: it already holds them."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts is empty; give at least one prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is {type(p).__name__}, expected str: {p!r}")
    encoded = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    out = []
    for i, ids in enumerate(encoded):
        if len(ids) == 0:
            raise ValueError(f"prompt {i} ({prompts[i]!r}) encodes to no tokens")
        if len(ids) > max_length:
            if truncation != "left":
                raise ValueError(
                    f"prompt {i} has {len(ids)} tokens, over the limit of {max_length} "
                    "(max_prompt_length, or the context window minus max_new_tokens); "
                    "shorten it or set prompt_truncation='left'"
                )
            ids = ids[-max_length:]
        out.append(list(ids))
    return out


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s) :] = torch.as_tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = True
    return ids, mask


def position_ids(attention_mask: Tensor) -> Tensor:
    """0, 1, 2, ... over the valid tokens of each row (pads get 0; they are never attended)."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def decode_rows(tokenizer, ids: Tensor, mask: Tensor) -> list[str]:
    """Text of the valid tokens of each row, special tokens (EOS, pad) dropped."""
    return [tokenizer.decode(r[m].tolist(), skip_special_tokens=True) for r, m in zip(ids, mask)]


def truncate_at_stop(
    response_ids: Tensor, stop_ids: Sequence[int], pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Keep each response up to and including its first stop token; pad the rest.

    Returns ``(response_ids, response_mask, has_stop)``, trimmed to the longest
    kept response.
    """
    is_stop = torch.isin(response_ids, torch.as_tensor(list(stop_ids), device=response_ids.device))
    stops_before = is_stop.long().cumsum(dim=1) - is_stop.long()
    mask = stops_before == 0
    has_stop = is_stop.any(dim=1)
    width = max(int(mask.sum(dim=1).max()), 1)
    ids = torch.where(mask, response_ids, torch.full_like(response_ids, pad_id))
    return ids[:, :width], mask[:, :width], has_stop
