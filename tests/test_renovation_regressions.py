"""Regression tests for bugs that came from duplicated plumbing (issue: renovation).

1. Sampling for evaluation or preference pairs never disturbs the global RNG: every
   entry point that samples leaves ``torch.get_rng_state()`` exactly as it found it.
2. One reward model, one score: the same (prompt, completion) scores identically through
   every entry point (rollout tokens with or without a sampled EOS, text, a model loaded
   from disk, and the trainer's reward path), against an independent reference: a plain
   unpadded forward pass on ``prompt + completion + EOS``, the convention of TRL's
   RewardTrainer that trained it.
"""

from __future__ import annotations

import pytest
import torch
from lm_fixtures import PROMPTS, make_policy, make_reward_model, make_tokenizer, make_trainer

from rlhf_pg.hf import RewardModel, generate_completions, load_reward_model, sample_tokens
from rlhf_pg.hf.tokens import left_pad, truncate_at_stop
from rlhf_pg.lm.rewards import CombinedReward
from rlhf_pg.lm.rollout import Rollout


def _unchanged_rng(fn):
    before = torch.get_rng_state().clone()
    fn()
    return torch.equal(before, torch.get_rng_state())


def test_sampling_with_a_generator_leaves_the_global_rng_alone_and_is_reproducible():
    tok = make_tokenizer(with_pad=True)
    model = make_policy(tok).eval()
    ids, mask = left_pad([tok(p)["input_ids"] for p in PROMPTS], tok.pad_token_id)
    kw = dict(
        max_new_tokens=8, temperature=1.0, stop_ids=[tok.eos_token_id], pad_id=tok.pad_token_id
    )
    outs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(7)
        assert _unchanged_rng(
            lambda g=gen: outs.append(sample_tokens(model, ids, mask, generator=g, **kw))
        )
    assert torch.equal(outs[0], outs[1])  # same generator state, same samples
    texts = []
    assert _unchanged_rng(
        lambda: texts.append(
            generate_completions(model, tok, PROMPTS, generator=torch.Generator().manual_seed(1))
        )
    )


def test_trainer_sampling_does_not_touch_the_global_rng():
    trainer = make_trainer(reward=lambda p, c: [float(len(x)) for x in c])
    assert _unchanged_rng(lambda: trainer.generate(PROMPTS[:4]))
    assert _unchanged_rng(lambda: trainer.complete(PROMPTS[:4]))
    assert _unchanged_rng(lambda: trainer.complete(PROMPTS[:4], greedy=True))


def _reference_score(rm, tok, text: str) -> float:
    ids = torch.tensor([tok(text + tok.eos_token)["input_ids"]])
    return rm(input_ids=ids).logits[0, 0].item()


def _rollout_for(tok, prompts, completions, with_eos):
    """A rollout whose tokens are the canonical encodings, ending in EOS where asked."""
    pad, eos = tok.pad_token_id, tok.eos_token_id
    q = [tok(p)["input_ids"] for p in prompts]
    r = [tok(c)["input_ids"] + ([eos] if e else []) for c, e in zip(completions, with_eos)]
    qi, qm = left_pad(q, pad)
    width = max(map(len, r))
    ri = torch.tensor([x + [pad] * (width - len(x)) for x in r])
    ri, rm_, has_stop = truncate_at_stop(ri, [eos], pad)
    rm_ = rm_ & (ri != pad)  # rows without EOS end at their last real token
    return Rollout(qi, qm, ri, rm_, list(prompts), list(completions), has_stop)


def test_one_reward_model_scores_the_same_through_every_entry_point(tmp_path):
    tok = make_tokenizer(with_pad=True)
    rm = make_reward_model(tok).eval()
    prompts = ["the movie", "i loved the", "a good film with", "twelve plus"]
    completions = [" was great", " music and the story", " a bad script", " seven"]
    expected = [_reference_score(rm, tok, p + c) for p, c in zip(prompts, completions)]

    scorer = RewardModel(rm, tok)
    # token entry point: the same texts sampled with and without a final EOS
    for with_eos in ([True] * 4, [False] * 4, [True, False, True, False]):
        rollout = _rollout_for(tok, prompts, completions, with_eos)
        got = scorer.score_responses(
            rollout.query_ids,
            rollout.query_mask,
            rollout.response_ids,
            rollout.response_mask,
            rollout.has_stop,
        )
        assert got.tolist() == pytest.approx(expected, abs=1e-5)
        # the trainer's path (CombinedReward) takes the token route for a shared vocabulary
        total, _ = CombinedReward(scorer)(rollout, tok)
        assert total.tolist() == pytest.approx(expected, abs=1e-5)
        no_tok, _ = CombinedReward(RewardModel(rm))(rollout, tok)
        assert no_tok.tolist() == pytest.approx(expected, abs=1e-5)
    # text entry points
    assert scorer(prompts, completions) == pytest.approx(expected, abs=1e-5)
    assert scorer.score_texts([p + c for p, c in zip(prompts, completions)]) == pytest.approx(
        expected, abs=1e-5
    )
    # from disk, as the recipes load it (normalisation off to compare raw scores)
    rm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = RewardModel.from_pretrained(tmp_path, normalize=False)
    assert loaded(prompts, completions) == pytest.approx(expected, abs=1e-5)
    # normalised: (raw - mean) / std with the stored statistics, on every path
    rm.config.reward_mean, rm.config.reward_std = 0.25, 2.0
    rm.config.save_pretrained(tmp_path)
    normalised = [(e - 0.25) / 2.0 for e in expected]
    assert load_reward_model(str(tmp_path))(prompts, completions) == pytest.approx(
        normalised, abs=1e-5
    )
