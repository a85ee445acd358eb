"""Rewards: reward-model score at the last non-pad token, callables, combos, per-token placement."""

import math

import pytest
import torch
from lm_fixtures import make_reward_model, make_tokenizer

from rlhf_pg.lm import CombinedReward, RewardModel, validate_scores
from rlhf_pg.lm.advantages import token_rewards
from rlhf_pg.lm.rollout import Rollout


def test_sequence_score_lands_on_last_valid_token_plus_kl_penalty_elsewhere():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    kl = torch.rand(3, 5)
    scores = torch.tensor([2.0, -1.0, 0.5])
    r = token_rewards(scores, kl, mask, kl_coef=0.1)
    expected = torch.where(mask, -0.1 * kl, torch.zeros_like(kl))
    for b, last in enumerate([2, 0, 4]):
        expected[b, last] += scores[b]
    torch.testing.assert_close(r, expected)
    assert (r[~mask] == 0).all()


def _rm_and_tok():
    tok = make_tokenizer(with_pad=True)
    return make_reward_model(tok).eval(), tok


def test_reward_model_scores_last_non_pad_token_independent_of_padding():
    rm, tok = _rm_and_tok()
    scorer = RewardModel(rm, tok)
    prompts, completions = ["the movie", "i loved the music and"], [" was great", " the story"]
    batched = scorer(prompts, completions)
    for p, c, got in zip(prompts, completions, batched):
        ids = torch.tensor([tok(p + c + tok.eos_token)["input_ids"]])  # trained with EOS
        alone = rm(input_ids=ids).logits[0, 0].item()  # no padding at all
        assert got == pytest.approx(alone, abs=1e-5)


def test_reward_model_with_two_labels_is_rejected():
    tok = make_tokenizer(with_pad=True)
    with pytest.raises(ValueError, match="num_labels=2"):
        RewardModel(make_reward_model(tok, num_labels=2), tok)


def test_weighted_combination_of_callables():
    def length(prompts, completions):
        return [len(c) for c in completions]

    def has_e(prompts, completions):
        return [float("e" in c) for c in completions]

    rollout = Rollout(
        torch.zeros(2, 1, dtype=torch.long),
        torch.ones(2, 1, dtype=torch.bool),
        torch.zeros(2, 1, dtype=torch.long),
        torch.ones(2, 1, dtype=torch.bool),
        ["a", "b"],
        ["abc", "ee"],
        torch.ones(2, dtype=torch.bool),
    )
    total, parts = CombinedReward([(0.5, length), has_e])(rollout)
    assert total.tolist() == [1.5, 2.0]
    assert parts["length"].tolist() == [3.0, 2.0]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ([1.0], "returned 1 scores for 2 completions"),
        ([1.0, float("nan")], "returned nan at index 1"),
        ([1.0, "good"], "non-number at index 1: 'good'"),
        (3.0, "must return a list of 2 numbers"),
    ],
)
def test_bad_reward_outputs_name_callable_and_index(output, message):
    with pytest.raises(
        (ValueError, TypeError), match="reward my_reward .*" + message.split(":")[0]
    ):
        validate_scores(output, 2, "my_reward")


def test_scores_accept_tensors_and_numpy():
    import numpy as np

    assert validate_scores(torch.tensor([1, 2]), 2, "f").tolist() == [1.0, 2.0]
    assert validate_scores(np.array([0.5, math.pi]), 2, "f")[1].item() == pytest.approx(math.pi)
