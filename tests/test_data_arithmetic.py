"""Arithmetic corpus: held-out split, controllable error rate, exact-match reward."""

import re

import pytest

from rlhf_pg.tasks.arithmetic import (
    arithmetic_prompts,
    build_arithmetic_corpus,
    exact_match_reward,
    split_problems,
)


def _parse(line):
    a, b, c = map(int, re.fullmatch(r"(\d+)\+(\d+)=(\d+)", line).groups())
    return a, b, c


def test_split_is_disjoint_and_complete():
    train, held = split_problems(max_operand=20, held_out_fraction=0.25, seed=0)
    assert not set(train) & set(held)
    assert len(train) + len(held) == 21 * 21
    assert len(held) == round(0.25 * 21 * 21)


def test_corpus_never_shows_held_out_problems():
    _, held = split_problems(max_operand=20, held_out_fraction=0.25, seed=0)
    lines = build_arithmetic_corpus(3000, error_rate=0.0, max_operand=20, held_out_fraction=0.25)
    pairs = {_parse(line)[:2] for line in lines}
    assert not pairs & set(held)
    prompts = arithmetic_prompts("held_out", max_operand=20, held_out_fraction=0.25)
    assert prompts == [f"{a}+{b}=" for a, b in held]


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_error_rate_is_the_share_of_wrong_answers(rate):
    lines = build_arithmetic_corpus(4000, error_rate=rate, seed=1)
    wrong = sum(a + b != c for a, b, c in map(_parse, lines)) / len(lines)
    assert abs(wrong - rate) < 0.03


def test_exact_match_reward():
    prompts = ["12+7=", "12+7=", "12+7=", "3+4=", "40+9="]
    completions = ["19", " 19 and more", "18", "70", ""]
    assert exact_match_reward(prompts, completions) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert exact_match_reward(["5-7="], ["-2"]) == [1.0]


def test_exact_match_reward_rejects_bad_input():
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        exact_match_reward(["1+1=", "2+2="], ["2"])
    with pytest.raises(ValueError, match="not an arithmetic prompt"):
        exact_match_reward(["hello"], ["2"])
