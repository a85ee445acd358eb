"""Prompts in, sampled responses and their per-token log-probs out.

Layout used everywhere in ``rlhf_pg.lm``: a sequence is a LEFT-padded prompt
(``query_ids``, width P) followed by a RIGHT-padded response
(``response_ids``, width R). Position ids come from the attention mask, so a
left-padded row sees exactly the positions it would see unpadded. The
response logits are the last R + 1 logits of the concatenation, shifted by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor
from transformers import GenerationConfig

from ..core import entropy
from .value_head import PolicyWithValueHead

PAD_TOKEN = "<|pad|>"


@dataclass
class Rollout:
    """One batch of completions (this process's share), everything aligned by row.

    Rows are ordered prompt-major: rows ``i*k .. i*k+k-1`` are the k samples of
    prompt i (``group_size`` = k). Tensors are None until computed.
    """

    query_ids: Tensor  # (B, P) long, left-padded
    query_mask: Tensor  # (B, P) bool
    response_ids: Tensor  # (B, R) long, right-padded after the first stop token
    response_mask: Tensor  # (B, R) bool, True up to and including the stop token
    prompts: list[str]
    completions: list[str]
    has_stop: Tensor  # (B,) bool, the response ended with a stop token
    group_size: int = 1
    logprobs: Tensor | None = None  # (B, R) policy log-probs under logits / T
    ref_logprobs: Tensor | None = None  # (B, R) reference log-probs under logits / T
    values: Tensor | None = None  # (B, R) V(prompt + response[:t])
    entropy: Tensor | None = None  # (B, R) entropy of the sampling distribution
    generate_seconds: float = 0.0
    forward_seconds: float = 0.0
    reward_seconds: float = 0.0

    def __len__(self) -> int:
        return self.query_ids.shape[0]

    @property
    def response_lengths(self) -> Tensor:
        return self.response_mask.sum(dim=1)

    def select(self, rows: Tensor) -> Rollout:
        """The sub-rollout of the given row indices (tensors and lists alike)."""
        idx = rows.tolist()
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                out[f.name] = v[rows.to(v.device)]
            elif isinstance(v, list):
                out[f.name] = [v[i] for i in idx]
            else:
                out[f.name] = v
        return replace(self, **out)

    def to(self, device: torch.device | str) -> Rollout:
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return replace(self, **moved)


def ensure_pad_token(tokenizer, model=None) -> bool:
    """Give the tokenizer a pad token distinct from EOS (adding one if needed) and make
    the model's embeddings large enough for it. Returns True when a token was added."""
    added = False
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        added = True
    if model is not None:
        base = model.pretrained_model if isinstance(model, PolicyWithValueHead) else model
        emb = base.get_input_embeddings()
        if emb.num_embeddings < len(tokenizer):
            base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        for cfg in (base.config, getattr(base, "generation_config", None)):
            if cfg is not None:
                cfg.pad_token_id = tokenizer.pad_token_id
    return added


def context_length(model) -> int | None:
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "max_seq_len"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return None


def encode_prompts(
    tokenizer,
    prompts: Sequence[str],
    *,
    max_length: int,
    truncation: str = "error",
) -> list[list[int]]:
    """Token ids of each prompt, checked: non-empty list of non-empty strings within the limit."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts is empty; give at least one prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is {type(p).__name__}, expected str: {p!r}")
    encoded = tokenizer(list(prompts))["input_ids"]
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


def sample_responses(
    model,
    query_ids: Tensor,
    query_mask: Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    stop_ids: Sequence[int],
    pad_id: int,
) -> Tensor:
    """Sample with the KV cache (``generate``); stops once every row has hit a stop token.

    Returns the raw new tokens (B, <= max_new_tokens), finished rows padded.
    """
    gen_config = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
        use_cache=True,
    )
    out = model.generate(
        input_ids=query_ids,
        attention_mask=query_mask.long(),
        position_ids=position_ids(query_mask),
        generation_config=gen_config,
    )
    return out[:, query_ids.shape[1] :]


def response_forward(
    model,
    query_ids: Tensor,
    query_mask: Tensor,
    response_ids: Tensor,
    response_mask: Tensor,
    *,
    temperature: float,
    with_values: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """One forward pass over prompt + response.

    Returns ``(logprobs, values, logits)`` for the R response tokens: the
    log-probs of the taken tokens under ``logits / temperature`` (float32), the
    values V(prompt + response[:t]) (or None), and the scaled logits (B, R, V).
    Only the response positions go through the LM head.
    """
    ids = torch.cat([query_ids, response_ids], dim=1)
    mask = torch.cat([query_mask, response_mask], dim=1)
    pos = position_ids(mask)
    width = response_ids.shape[1]
    if isinstance(getattr(model, "module", model), PolicyWithValueHead):  # maybe DDP-wrapped
        logits, values = model(
            ids, mask.long(), pos, logits_to_keep=width + 1, with_values=with_values
        )
    else:
        logits = model(
            input_ids=ids,
            attention_mask=mask.long(),
            position_ids=pos,
            logits_to_keep=width + 1,
            use_cache=False,
        ).logits
        values = None
    logits = logits[:, :-1].float() / temperature
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
    if values is not None:
        values = values[:, -width - 1 : -1].float()
    return logprobs, values, logits


@torch.no_grad()
def evaluate_rollout(
    policy: PolicyWithValueHead,
    ref_model,
    rollout: Rollout,
    *,
    temperature: float,
    with_values: bool,
) -> None:
    """Fill in the rollout's policy log-probs, values and entropy (one pass) and the
    reference log-probs (``ref_model``, or the policy's base with adapters disabled)."""
    tokens = (rollout.query_ids, rollout.query_mask, rollout.response_ids, rollout.response_mask)
    logprobs, values, logits = response_forward(
        policy, *tokens, temperature=temperature, with_values=with_values
    )
    rollout.entropy = entropy(logits)
    del logits
    if ref_model is None:
        with policy.pretrained_model.disable_adapter():
            ref, _, _ = response_forward(policy.pretrained_model, *tokens, temperature=temperature)
    else:
        ref, _, _ = response_forward(ref_model, *tokens, temperature=temperature)
    rollout.logprobs, rollout.values, rollout.ref_logprobs = logprobs, values, ref
