"""The one way this project samples from a causal LM: training rollouts, evaluation,
preference pairs and ``PPOTrainer.complete`` all call :func:`sample_tokens`.

Randomness comes from a ``torch.Generator`` the caller owns. The global RNG is never
reseeded: ``generate`` draws from the global stream, so the draw runs inside
``torch.random.fork_rng`` seeded from the caller's generator, and the global state
(CPU and CUDA) is restored afterwards. The same generator state gives the same samples.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import GenerationConfig

from .tokens import decode_rows, encode_prompts, left_pad, position_ids, truncate_at_stop


@contextlib.contextmanager
def _seeded_from(generator: torch.Generator | None, device: torch.device) -> Iterator[None]:
    """Run the body on a global RNG seeded from ``generator``, restoring the global state
    (CPU, and the device's on CUDA) afterwards. ``None``: the global stream as it is."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def sample_tokens(
    model,
    query_ids: Tensor,
    query_mask: Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    stop_ids: Sequence[int],
    pad_id: int,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """New tokens (B, <= max_new_tokens) after left-padded prompts, with the KV cache.

    ``temperature == 0`` decodes greedily. Generation stops once every row has produced
    a stop token; finished rows are padded with ``pad_id``. Pass the result to
    :func:`~rlhf_pg.hf.tokens.truncate_at_stop` to get the response and its mask.
    """
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    else:
        sampling = {"do_sample": False}
    gen_config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
        use_cache=True,
        **sampling,
    )
    with _seeded_from(generator if temperature > 0 else None, query_ids.device):
        out = model.generate(
            input_ids=query_ids,
            attention_mask=query_mask.long(),
            position_ids=position_ids(query_mask),
            generation_config=gen_config,
        )
    return out[:, query_ids.shape[1] :]


@torch.no_grad()
def generate_completions(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[list[str], list[list[int]]]:
    """One completion per text prompt: its text (special tokens dropped) and its token ids
    (up to and including EOS where it stopped). Prompts are encoded like the PPO rollout's."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    texts: list[str] = []
    tokens: list[list[int]] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="generate", disable=not progress, leave=False):
        encoded = encode_prompts(tokenizer, prompts[start : start + batch_size], max_length=10**9)
        query_ids, query_mask = left_pad(encoded, pad)
        raw = sample_tokens(
            model,
            query_ids.to(device),
            query_mask.to(device),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            stop_ids=[eos],
            pad_id=pad,
            generator=generator,
        )
        ids, mask, _ = truncate_at_stop(raw, [eos], pad)
        texts += decode_rows(tokenizer, ids, mask)
        tokens += [row[valid].tolist() for row, valid in zip(ids, mask)]
    model.train(was_training)
    return texts, tokens
