"""The decoding loop's speed-ups change the work, not the result (rlhf_pg.hf.sampling):

- the draw inverts the cumulative distribution with one uniform per row instead of
  ``torch.multinomial``'s exponential per vocabulary entry: the same categorical
  distribution (checked against the probabilities and against a plain Python inversion of
  the same uniforms), other tokens for the same generator state;
- the KV cache writes into a buffer allocated once instead of concatenating every step:
  bit-identical tokens, log-probs and entropies to transformers' own ``DynamicCache``;
- decoding with fewer torch threads than the rest of the step draws the same tokens.
"""

from __future__ import annotations

import pytest
import torch
from lm_fixtures import PROMPTS, make_policy, make_tokenizer, make_trainer
from model_families import FAMILIES, load_family
from transformers.cache_utils import DynamicCache

from rlhf_pg.hf import sample_with_logprobs
from rlhf_pg.hf import sampling as sampling_module
from rlhf_pg.hf.sampling import (
    _invert_cdf,
    _PreallocatedLayer,
    _uniforms,
    next_token_distribution,
)
from rlhf_pg.hf.tokens import encode_prompts, left_pad
from rlhf_pg.lm import trainer as trainer_module

FAMILY_PROMPTS = ["the movie was", "i loved", "what is twelve plus", "the"]


def _draw(probs, generator):
    return _invert_cdf(probs, _uniforms(probs.shape[0], generator, probs.device))


def test_draw_follows_the_categorical_distribution():
    """200k draws from weights with zeros, a rare token and an unnormalised total: every
    frequency within 5 standard errors of its probability, no zero-probability token drawn."""
    weights = torch.tensor([0.0, 0.5, 1e-3, 0.0, 0.25, 0.749, 0.0, 0.5])  # sums to 2.0
    probs = weights / weights.sum()
    n = 200_000
    drawn = _draw(weights.expand(n, -1), torch.Generator().manual_seed(0))
    freq = torch.bincount(drawn, minlength=len(weights)).double() / n
    tolerance = 5 * (probs.double() * (1 - probs.double()) / n).sqrt()
    assert (freq - probs.double()).abs().le(tolerance).all(), (freq, probs)
    assert freq[weights == 0].eq(0).all()


def test_draw_inverts_the_cumulative_sum_of_the_same_uniforms():
    """A plain Python inversion (running sum in float64, first index past u * total) of the
    uniforms the generator gives picks the very same tokens, top-k zeros included."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(64, 50, generator=gen) * 3
    probs = next_token_distribution(logits, 0.8, 10, 1.0)  # 40 zeros per row
    state = torch.Generator().manual_seed(11)
    got = _draw(probs, state)
    uniforms = torch.rand(64, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    for row, u, token in zip(probs.tolist(), uniforms[:, 0].tolist(), got.tolist()):
        threshold = u * sum(row)  # math.fsum would round differently from a running sum
        running, expected = 0.0, None
        for index, p in enumerate(row):
            running += p
            if running > threshold:
                expected = index
                break
        assert token == expected
        assert row[token] > 0


def test_draw_refuses_non_finite_probabilities():
    probs = torch.tensor([[0.5, 0.5], [float("nan"), 1.0]])
    with pytest.raises(ValueError, match="inf or nan"):
        _draw(probs, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("family", FAMILIES)
def test_preallocated_cache_gives_the_default_cache_results_bit_for_bit(
    family, tmp_path, monkeypatch
):
    """Tokens, log-probs and entropies with the preallocated cache equal those with
    transformers' concatenating DynamicCache exactly (same generator state)."""
    model, tok, _ = load_family(family, tmp_path)
    model.eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids, mask = left_pad(encode_prompts(tok, FAMILY_PROMPTS * 2, max_length=64), pad)
    settings = dict(max_new_tokens=10, temperature=0.9, stop_ids=[tok.eos_token_id], pad_id=pad)
    fast = sample_with_logprobs(
        model, ids, mask, generator=torch.Generator().manual_seed(2), **settings
    )
    assert any(isinstance(layer, _PreallocatedLayer) for layer in _cache_of(model, ids, mask))
    monkeypatch.setattr(
        sampling_module, "decoding_cache", lambda m, capacity: DynamicCache(config=m.config)
    )
    plain = sample_with_logprobs(
        model, ids, mask, generator=torch.Generator().manual_seed(2), **settings
    )
    assert torch.equal(fast.tokens, plain.tokens)
    assert torch.equal(fast.logprobs, plain.logprobs)
    assert torch.equal(fast.entropy, plain.entropy)


def _cache_of(model, ids, mask):
    cache = sampling_module.decoding_cache(model, ids.shape[1] + 1)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask.long(), past_key_values=cache, use_cache=True)
    return cache.layers


def test_preallocated_layer_grows_past_its_capacity_like_concatenation():
    layer = _PreallocatedLayer(capacity=2)
    steps = [torch.randn(3, 2, n, 4) for n in (2, 1, 3)]  # 6 positions > capacity 2
    for i, step in enumerate(steps):
        keys, values = layer.update(step, -step)
        expected = torch.cat(steps[: i + 1], dim=2)
        assert torch.equal(keys, expected)
        assert torch.equal(values, -expected)
    assert layer.get_seq_length() == 6


def test_decoding_with_one_thread_draws_the_same_tokens(monkeypatch):
    """generation_threads=1 in a two-thread process: the decode runs on one thread, draws
    the same rollout (tokens and the sampling pass's log-probs) as decoding with both, and
    the thread count is restored afterwards."""
    seen = []
    real = trainer_module.sample_with_logprobs

    def counting(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "sample_with_logprobs", counting)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rollouts = []
        for threads in (0, 1):
            tok = make_tokenizer()
            trainer = make_trainer(
                tok, make_policy(tok), estimator="rloo", samples_per_prompt=2,
                sampling_logprobs=True, generation_threads=threads, max_new_tokens=8,
            )  # fmt: skip
            rollouts.append(trainer.generate(PROMPTS[:2]))
            assert torch.get_num_threads() == 2
        assert seen == [2, 1]
        a, b = rollouts
        assert torch.equal(a.response_ids, b.response_ids)
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-6, rtol=0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("family", FAMILIES)
def test_dropping_finished_rows_changes_no_token(family, tmp_path, monkeypatch):
    """Rows that stopped leave the forward passes; with them dropped at every chance, at
    the default share or never, the tokens, log-probs and entropies are the same (many stop
    tokens, so rows end at different steps)."""
    model, tok, _ = load_family(family, tmp_path)
    model.eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids, mask = left_pad(encode_prompts(tok, FAMILY_PROMPTS * 3, max_length=64), pad)
    stops = [tok.eos_token_id, *range(3, len(tok), 7)]  # about 1 token in 7 stops a row
    settings = dict(max_new_tokens=12, temperature=1.0, stop_ids=stops, pad_id=pad)
    results = {}
    for share in (1.0, sampling_module.COMPACT_BELOW, 0.0):  # 0: never drop a row
        monkeypatch.setattr(sampling_module, "COMPACT_BELOW", share)
        results[share] = sample_with_logprobs(
            model, ids, mask, generator=torch.Generator().manual_seed(7), **settings
        )
    never = results.pop(0.0)
    is_stop = torch.isin(never.tokens, torch.tensor(stops)).long()
    after_stop = (is_stop.cumsum(1) - is_stop) > 0  # padding after the row's stop token
    assert len(set(after_stop.sum(1).tolist())) > 2  # rows stop at different steps
    for got in results.values():
        assert torch.equal(got.tokens, never.tokens)
        torch.testing.assert_close(got.logprobs, never.logprobs, atol=1e-6, rtol=0)
        torch.testing.assert_close(got.entropy, never.entropy, atol=1e-6, rtol=0)
    assert never.tokens[after_stop].eq(pad).all()
    assert never.logprobs[after_stop].eq(0).all() and never.entropy[after_stop].eq(0).all()
