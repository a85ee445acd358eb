"""The review grammar: deterministic, diverse, both sentiments, gold-neutral prompts."""

import re

import pytest

from rlhf_pg.tasks.gold import fraction_positive, gold_reward, score_gold
from rlhf_pg.tasks.reviews import build_corpus, extract_prompt, sentiment_prompts


def test_same_seed_same_corpus_other_seed_other_corpus():
    assert build_corpus(300, seed=3) == build_corpus(300, seed=3)
    assert build_corpus(300, seed=3) != build_corpus(300, seed=4)


def test_grammar_gives_tens_of_thousands_of_distinct_reviews_and_sentences():
    raw = build_corpus(20000, seed=0, distinct=False)
    assert len(set(raw)) > 19000
    sentences = {s for text in raw for s in re.split(r"(?<=\.) ", text)}
    assert len(sentences) > 20000
    assert len(set(build_corpus(20000, seed=0))) == 20000


def test_gold_scorer_sees_both_sentiments_in_the_corpus():
    scores = score_gold(build_corpus(1000, seed=0))
    assert 0.3 < fraction_positive(scores) < 0.7
    assert sum(s <= -0.05 for s in scores) / len(scores) > 0.3
    assert abs(sum(scores) / len(scores)) < 0.3


def test_prompts_are_the_first_words_and_carry_no_sentiment():
    text = "I watched this movie last night and it was great."
    assert extract_prompt(text, 4) == "I watched this movie"
    prompts = set(sentiment_prompts(2000, seed=5))
    assert len(prompts) > 30
    assert all(len(p.split()) == 4 for p in prompts)
    assert score_gold(sorted(prompts)) == [0.0] * len(prompts)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="n must be >= 1"):
        build_corpus(0)
    with pytest.raises(ValueError, match="n_words"):
        extract_prompt("a b c", 0)
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        gold_reward(["a", "b"], ["c"])


def test_gold_reward_scores_prompt_plus_completion():
    good, bad = gold_reward(["The film was", "The film was"], [" wonderful.", " awful."])
    assert good > 0.3 and bad < -0.3
