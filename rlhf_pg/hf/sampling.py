"""The one way this project samples from a causal LM: training rollouts, evaluation,
preference pairs and ``PPOTrainer.complete`` all call :func:`sample_tokens`.

It is a plain decoding loop over the model's forward pass with the KV cache, not
``model.generate``: ``generate`` fills every unset option from the model's
``generation_config.json`` (repetition penalty, ``min_new_tokens``, suppressed tokens, ...),
so the tokens would come from a different distribution than the ``softmax(logits / T)``
the trainer's log-probs use. Here the distribution is exactly that one (optionally
truncated by top-k / top-p, for evaluation only), nothing else.

Randomness comes from a ``torch.Generator`` the caller owns; the global RNG is never
touched, so the same generator state gives the same samples.

:func:`sample_with_logprobs` draws the very same tokens and also keeps, from the
distribution each token was drawn from, its log-prob and entropy: the trainer's
critic-free estimators use them instead of a second forward pass over the rollout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers.cache_utils import DynamicCache, DynamicLayer

from ..core import entropy
from .tokens import decode_rows, encode_prompts, left_pad, position_ids, truncate_at_stop


def next_token_distribution(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    r"""Probabilities :math:`\mathrm{softmax}(z / T)` of the next token from logits ``(B, V)``,
    restricted to the ``top_k`` most likely tokens and to the smallest set whose
    probability reaches ``top_p`` (renormalised) when those are set (0 / 1.0 = off)."""
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
        drop = (before >= top_p).scatter(-1, order, before >= top_p)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def _uniforms(rows: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """(rows, 1) float64 uniforms on [0, 1) from the caller's generator (on its device)."""
    where = device if generator is None else generator.device
    u = torch.rand(rows, 1, dtype=torch.float64, generator=generator, device=where)
    return u.to(device)


def _invert_cdf(probs: Tensor, u: Tensor) -> Tensor:
    r"""The token of each row of ``probs`` (B, V) that the uniform ``u`` (B, 1) picks: the
    first :math:`a` with :math:`\sum_{b \le a} p_b > u \sum_b p_b`.

    With :math:`u \sim U[0, 1)` that is exactly the categorical distribution of ``probs``,
    the one ``torch.multinomial`` draws from; but ``multinomial`` spends an exponential draw
    on every vocabulary entry (B x V per token: 16% of this project's CPU decoding time)
    where this spends one uniform per row, so the same generator state gives other (equally
    distributed) tokens than ``multinomial`` would.
    Sums run in float64 so that no token's share is lost to rounding (float32 sums over a
    150k vocabulary drift by more than a rare token's probability). A token of probability
    0 (top-k / top-p) is never picked: its cumulative sum equals its predecessor's, so it is
    never the first to exceed the threshold; and ``u < 1`` keeps the threshold below the
    last sum."""
    cdf = probs.to(torch.float64).cumsum(dim=-1)
    total = cdf[:, -1:]
    if not bool(torch.isfinite(total).all()):
        raise ValueError("next-token probabilities contain inf or nan (are the logits finite?)")
    return torch.searchsorted(cdf, u * total, right=True)[:, 0]


class Samples(NamedTuple):
    """New tokens and, per token, the log-prob and entropy of the distribution it was
    drawn from: :math:`\\mathrm{softmax}(z / T)` of the logits ``z`` of that decoding step."""

    tokens: Tensor  # (B, N) long
    logprobs: Tensor  # (B, N) float32
    entropy: Tensor  # (B, N) float32


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

    ``temperature == 0`` decodes greedily. Decoding stops once every row has produced a
    stop token; later positions of finished rows hold ``pad_id``. Pass the result to
    :func:`~rlhf_pg.hf.tokens.truncate_at_stop` for the response and its mask.
    """
    settings = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    return _decode(
        model, query_ids, query_mask, max_new_tokens, stop_ids, pad_id, generator, settings
    )[0]


@torch.no_grad()
def sample_with_logprobs(
    model,
    query_ids: Tensor,
    query_mask: Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    stop_ids: Sequence[int],
    pad_id: int,
    generator: torch.Generator | None = None,
) -> Samples:
    r"""As :func:`sample_tokens` at ``temperature > 0`` without truncation (the same tokens
    from the same generator state), plus each token's log-prob
    :math:`z_a / T - \operatorname{logsumexp}(z / T)` and the entropy of
    :math:`\mathrm{softmax}(z / T)`, in float32, at every new position (0 at the padding
    after a row's stop token).

    These equal a full forward pass's :func:`rlhf_pg.lm.rollout.token_logprobs` in exact
    arithmetic; in float32 they differ by rounding only (the KV-cached steps multiply in
    another order: about 5e-7 on the test models), under bf16 by far more.
    """
    if not temperature > 0:
        raise ValueError(f"sample_with_logprobs needs temperature > 0, got {temperature}")
    settings = {"temperature": temperature, "top_k": 0, "top_p": 1.0}
    tokens, logprobs, entropies = _decode(
        model, query_ids, query_mask, max_new_tokens, stop_ids, pad_id, generator, settings,
        record=True,
    )  # fmt: skip
    return Samples(tokens, logprobs, entropies)


class _PreallocatedLayer(DynamicLayer):
    """A KV-cache layer that writes each step's keys and values into a buffer sized for the
    whole decode and returns views of its filled part. transformers' ``DynamicLayer``
    concatenates the whole cache at every step instead (a quarter of the CPU decoding time
    at 32 new tokens); the attention sees the same values in the same shapes."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self._buffers = [self._empty(x, self.capacity) for x in (key_states, value_states)]
        end = self.length + key_states.shape[-2]
        if end > self.capacity:  # longer than planned: grow (never in _decode's own use)
            self.capacity = max(end, 2 * self.capacity)
            self._buffers = [self._grow(buf) for buf in self._buffers]
        for buf, new in zip(self._buffers, (key_states, value_states)):
            buf[:, :, self.length : end].copy_(new)
        self.length = end
        self.keys, self.values = (buf[:, :, :end] for buf in self._buffers)
        return self.keys, self.values

    def batch_select_indices(self, indices: Tensor) -> None:
        """Keep only the rows ``indices`` (a decode dropping its finished rows)."""
        if self.is_initialized:
            self._buffers = [buf.index_select(0, indices) for buf in self._buffers]
            self.keys, self.values = (buf[:, :, : self.length] for buf in self._buffers)

    @staticmethod
    def _empty(like: Tensor, length: int) -> Tensor:
        b, h, _, d = like.shape
        return like.new_empty(b, h, length, d)

    def _grow(self, buf: Tensor) -> Tensor:
        bigger = self._empty(buf, self.capacity)
        bigger[:, :, : self.length].copy_(buf[:, :, : self.length])
        return bigger


def decoding_cache(model, capacity: int) -> DynamicCache:
    """The model's default cache (``DynamicCache(config=...)``) with every plain full-attention
    layer replaced by one that holds ``capacity`` positions without concatenating; sliding-window
    and other special layers stay as transformers builds them."""
    cache = DynamicCache(config=model.config)
    cache.layers = [
        _PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer
        for layer in cache.layers
    ]
    if getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:  # layers made lazily
        cache.layer_class_to_replicate = partial(_PreallocatedLayer, capacity)
    return cache


# Finished rows leave the decoding batch once at most this share of the rows still decoding
# is unfinished: dropping them copies the cache, so it is done in a few large steps
COMPACT_BELOW = 0.75


def _decode(
    model,
    query_ids: Tensor,
    query_mask: Tensor,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int,
    generator: torch.Generator | None,
    settings: dict,
    *,
    record: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The decoding loop; ``record``: also the drawn tokens' log-probs and entropies.

    Per new token: one forward pass of one position with the KV cache over the rows still
    decoding, the draw, and two host syncs (are the probabilities finite? have all rows
    stopped?). The cache and the attention mask are allocated once for the longest decode
    (prompt + ``max_new_tokens``) and filled in place. Rows that produced a stop token leave the forward passes (see
    ``COMPACT_BELOW``); the generator still gives one uniform per row of the whole batch at
    every step, so which rows are dropped when does not change the tokens."""
    temperature = settings["temperature"]
    batch, width = query_ids.shape
    device = query_ids.device
    # the mask of every position the decode can reach; step t attends to its first width + t
    mask = torch.ones(batch, width + max_new_tokens, dtype=torch.long, device=device)
    mask[:, :width] = query_mask
    stops = torch.as_tensor(list(stop_ids), device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    rows = torch.arange(batch, device=device)  # the rows in the forward passes
    cache = decoding_cache(model, width + max_new_tokens)
    out = model(
        input_ids=query_ids, attention_mask=mask[:, :width], position_ids=position_ids(query_mask),
        past_key_values=cache, use_cache=True, logits_to_keep=1,
    )  # fmt: skip
    position = query_mask.sum(dim=1, keepdim=True)  # the next token's position in each row
    new_tokens, logprobs, entropies = [], [], []
    for step in range(max_new_tokens):
        logits = out.logits[:, -1]
        if temperature > 0:
            probs = next_token_distribution(logits, **settings)
            u = _uniforms(batch, generator, device)  # every row's, decoding or not
            token = _invert_cdf(probs, u[rows])
        else:
            token = logits.argmax(dim=-1)
        done = finished[rows]  # stopped at an earlier step: pad from here on
        token = torch.where(done, torch.full_like(token, pad_id), token)
        new_tokens.append(
            torch.full_like(finished, pad_id, dtype=token.dtype).index_put((rows,), token)
        )
        if record:  # the formula of the trainer's token_logprobs, on this step's logits
            z = logits.float() / temperature
            taken = z.gather(-1, token[:, None])[:, 0] - torch.logsumexp(z, dim=-1)
            ent = entropy(z)
            zero = torch.zeros_like(taken)
            logprobs.append(
                torch.zeros(batch, device=device).index_put((rows,), torch.where(done, zero, taken))
            )
            entropies.append(
                torch.zeros(batch, device=device).index_put((rows,), torch.where(done, zero, ent))
            )
        finished[rows] = done | torch.isin(token, stops)
        left = int((~finished[rows]).sum())  # a host sync: are all rows done?
        if step + 1 == max_new_tokens or left == 0:
            break
        if left <= COMPACT_BELOW * len(rows):  # drop the finished rows from the batch
            keep = (~finished[rows]).nonzero()[:, 0]
            rows, token, position = rows[keep], token[keep], position[keep]
            mask = mask[keep]
            cache.batch_select_indices(keep)
        out = model(
            input_ids=token[:, None], attention_mask=mask[:, : width + step + 1],
            position_ids=position, past_key_values=cache, use_cache=True,
        )  # fmt: skip
        position = position + 1
    if not record:
        return torch.stack(new_tokens, dim=1), None, None
    return torch.stack(new_tokens, dim=1), torch.stack(logprobs, 1), torch.stack(entropies, 1)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the duration (0: unchanged)."""
    before = torch.get_num_threads()
    if threads <= 0 or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    add_special_tokens: bool = True,
) -> tuple[list[str], list[list[int]]]:
    """One completion per text prompt: its text (special tokens dropped) and its token ids
    (up to and including EOS where it stopped). Prompts are encoded like the PPO rollout's
    (``add_special_tokens=False`` for chat-templated text)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    texts: list[str] = []
    tokens: list[list[int]] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="generate", disable=not progress, leave=False):
        encoded = encode_prompts(
            tokenizer,
            prompts[start : start + batch_size],
            max_length=10**9,
            add_special_tokens=add_special_tokens,
        )
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
