"""Rollout: pad tokens, left padding, position ids, stop tokens, log-prob recomputation."""

import pytest
import torch
from lm_fixtures import PROMPTS, make_policy, make_tokenizer, make_trainer, unpadded_logprobs

from rlhf_pg.hf.sampling import sample_tokens
from rlhf_pg.hf.tokens import ensure_pad_token, left_pad, truncate_at_stop


def test_pad_token_added_distinct_from_eos_and_embeddings_resized():
    tok = make_tokenizer()
    model = make_policy(tok)
    assert tok.pad_token_id is None
    assert ensure_pad_token(tok, model)
    assert tok.pad_token_id != tok.eos_token_id
    assert model.get_input_embeddings().num_embeddings == len(tok) > tok.pad_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    assert not ensure_pad_token(tok, model)  # idempotent


def test_pad_equal_to_eos_is_replaced():
    tok = make_tokenizer()
    tok.pad_token = tok.eos_token
    ensure_pad_token(tok)
    assert tok.pad_token_id != tok.eos_token_id


def test_truncate_after_first_stop_token_keeps_the_stop_token():
    eos, pad = 0, 9
    raw = torch.tensor([[5, 6, eos, 7, eos], [5, 6, 7, 8, 4], [eos, 3, 3, 3, 3]])
    ids, mask, has_stop = truncate_at_stop(raw, [eos], pad)
    assert mask.tolist() == [
        [True, True, True, False, False],
        [True, True, True, True, True],
        [True, False, False, False, False],
    ]
    assert ids[0].tolist() == [5, 6, eos, pad, pad]
    assert has_stop.tolist() == [True, False, True]
    ids, mask, _ = truncate_at_stop(torch.tensor([[1, eos, 2], [eos, 2, 2]]), [eos], pad)
    assert ids.shape == (2, 2)  # trimmed to the longest kept response


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_rollout_logprobs_equal_fresh_unpadded_forward(temperature):
    trainer = make_trainer(temperature=temperature, max_new_tokens=8)
    rollout = trainer.generate(PROMPTS)  # prompts of different lengths: left padding
    assert not rollout.query_mask.all(), "the batch must contain left padding"
    model = trainer.unwrapped_model.pretrained_model
    with torch.no_grad():
        for i in range(len(rollout)):
            q = rollout.query_ids[i][rollout.query_mask[i]]
            r = rollout.response_ids[i][rollout.response_mask[i]]
            fresh = unpadded_logprobs(model, q, r, temperature)
            got = rollout.logprobs[i][rollout.response_mask[i]]
            torch.testing.assert_close(got, fresh, atol=1e-5, rtol=0)
    # the policy equals its frozen copy at the start: reference log-probs are identical
    assert torch.equal(rollout.logprobs, rollout.ref_logprobs)


def test_left_padded_greedy_generation_matches_unpadded():
    """Generation sees the positions an unpadded prompt would (position ids from the mask)."""
    tok = make_tokenizer()
    model = make_policy(tok).eval()
    ensure_pad_token(tok, model)
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    q, m = left_pad(ids, tok.pad_token_id)
    kw = dict(
        max_new_tokens=6,
        temperature=1.0,
        top_k=1,
        top_p=1.0,
        stop_ids=[tok.eos_token_id],
        pad_id=tok.pad_token_id,
    )
    batched = sample_tokens(model, q, m, **kw)
    for i, one in enumerate(ids):
        single = sample_tokens(
            model, torch.tensor([one]), torch.ones(1, len(one), dtype=bool), **kw
        )
        n = single.shape[1]  # a lone prompt stops at its own EOS; the batch pads after it
        assert batched[i, :n].tolist() == single[0].tolist()
        assert (batched[i, n:] == tok.pad_token_id).all()


def test_stop_tokens_and_early_stop():
    tok = make_tokenizer()
    model = make_policy(tok)
    stop = tok.convert_tokens_to_ids("e")
    trainer = make_trainer(tok, model, stop_token_ids=[stop], max_new_tokens=30)
    rollout = trainer.generate(PROMPTS * 2)
    for ids, mask, has in zip(rollout.response_ids, rollout.response_mask, rollout.has_stop):
        valid = ids[mask].tolist()
        assert stop not in valid[:-1]
        assert has == (valid[-1] == stop)
        assert (ids[~mask] == tok.pad_token_id).all()
    assert rollout.completions[0] == tok.decode(
        rollout.response_ids[0][rollout.response_mask[0]], skip_special_tokens=True
    )


def test_fused_gelu_is_the_same_function():
    from rlhf_pg.hf.models import fuse_gelu

    tok = make_tokenizer(with_pad=True)
    model = make_policy(tok, n_layer=3).eval()
    ids = torch.tensor([tok("the movie was great")["input_ids"]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        assert fuse_gelu(model) == 3
        after = model(input_ids=ids).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert fuse_gelu(model) == 0


def test_greedy_completions_for_evaluation_are_deterministic():
    trainer = make_trainer(max_new_tokens=5)
    first = trainer.complete(PROMPTS, greedy=True)
    assert first == trainer.complete(PROMPTS, greedy=True)
    assert len(first) == len(PROMPTS) and all(isinstance(c, str) for c in first)


def test_chunked_token_logprobs_and_entropy_equal_a_full_log_softmax():
    from rlhf_pg.lm.rollout import LOGPROB_CHUNK, token_logprobs

    torch.manual_seed(0)
    logits = torch.randn(3, 2 * LOGPROB_CHUNK + 5, 50, requires_grad=True)  # crosses chunks
    tokens = torch.randint(0, 50, (3, logits.shape[1]))
    got, ent = token_logprobs(logits, tokens, 0.7, with_entropy=True)
    full = torch.log_softmax(logits / 0.7, dim=-1)
    expected = full.gather(-1, tokens[..., None])[..., 0]
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(ent, -(full.exp() * full).sum(-1))
    (g1,) = torch.autograd.grad(got.sum(), logits, retain_graph=True)
    (g2,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(g1, g2)


def test_complete_with_temperature_zero_is_greedy():
    trainer = make_trainer(max_new_tokens=5)
    assert trainer.complete(PROMPTS, temperature=0.0) == trainer.complete(PROMPTS, greedy=True)


def test_left_truncated_prompts_reach_the_reward_as_the_policy_saw_them():
    tok = make_tokenizer()
    seen = []

    def reward(prompts, completions):
        seen.extend(prompts)
        return [0.0] * len(prompts)

    trainer = make_trainer(
        tok, reward=reward, max_prompt_length=2, prompt_truncation="left", batch_size=2
    )
    long_prompt = "i loved the music and the story"
    rollout = trainer.generate([long_prompt, "the"])
    trainer.score(rollout)
    kept = tok(long_prompt)["input_ids"][-2:]
    assert seen[0] == tok.decode(kept) != long_prompt
    assert seen[1] == "the"
