"""The chat-arithmetic task: generated conversations and their answer column, the sloppy
tutor of the SFT data, the exact-match reward on hand-written replies, and the chat
formatting of prompts and SFT texts checked against ChatML written out by hand."""

import random
import re
from collections import Counter

import pytest

from rlhf_pg.stages.evaluate import arithmetic_accuracy
from rlhf_pg.tasks import chat_arithmetic as ca
from rlhf_pg.tasks.arithmetic import split_problems


def _operands(conversation) -> tuple[int, int]:
    (user,) = conversation
    assert user["role"] == "user"
    a, b = map(int, re.findall(r"\d+", user["content"]))
    return a, b


def test_problem_rows_hold_each_pair_of_their_split_once_with_its_sum():
    train, held = split_problems(19, 0.2, seed=0)
    for split, pairs in (("train", train), ("held_out", held)):
        rows = ca.problem_rows(split, max_operand=19, seed=0)
        assert [_operands(r["prompt"]) for r in rows] == pairs
        assert all(r["answer"] == sum(_operands(r["prompt"])) for r in rows)
    assert len(ca.problem_rows("train", limit=7)) == 7
    # the same arguments give the same rows (phrasings included)
    assert ca.problem_rows("held_out", seed=3) == ca.problem_rows("held_out", seed=3)
    with pytest.raises(ValueError, match="split must be 'train' or 'held_out', got 'test'"):
        ca.problem_rows("test")


def test_sft_rows_use_train_pairs_only_and_keep_the_true_answer():
    _, held = split_problems(19, 0.2, seed=0)
    rows = ca.sft_rows(2000, max_operand=19, seed=0)
    for row in rows:
        a, b = _operands(row["prompt"])
        assert (a, b) not in held and row["answer"] == a + b
        (reply,) = row["completion"]
        assert reply["role"] == "assistant" and re.fullmatch(r"\d+", reply["content"])
    dataset = ca.as_dataset(rows[:5])
    assert dataset.column_names == ["prompt", "completion", "answer"]
    assert dataset[0]["prompt"] == rows[0]["prompt"]


def test_tutor_forgets_carries_at_the_configured_rate():
    rng = random.Random(0)
    assert ca.has_carry(17, 5) and ca.has_carry(5, 5) and not ca.has_carry(12, 7)
    # no slips, no errors: always right; carry_slip 1: every carry dropped, nothing else
    assert all(ca.tutor_answer(a, 9, rng, 0.0, 0.0) == a + 9 for a in range(20))
    dropped = [ca.tutor_answer(a, 5, rng, 1.0, 0.0) for a in (3, 4, 5, 9, 15, 13)]
    assert dropped == [8, 9, 0, 4, 10, 18]
    # carry problems at carry_slip 0.6: 60% dropped carries; non-carry problems untouched
    answers = Counter(ca.tutor_answer(17, 5, rng, 0.6, 0.0) for _ in range(4000))
    assert set(answers) == {12, 22} and answers[12] / 4000 == pytest.approx(0.6, abs=0.03)
    assert {ca.tutor_answer(12, 7, rng, 0.6, 0.0) for _ in range(200)} == {19}
    # error_rate: off by 1 to 10, never right by accident
    wrong = [ca.tutor_answer(12, 7, rng, 0.0, 1.0) for _ in range(500)]
    assert all(1 <= abs(w - 19) <= 20 and w >= 0 for w in wrong) and 19 not in wrong


@pytest.mark.parametrize(
    ("completion", "answer", "reward"),
    [
        ("22", 22, 1.0),
        (" 22 ", 22, 1.0),
        ("22.", 22, 1.0),
        ("The answer is 22", 22, 1.0),
        ("22", "22", 1.0),  # an answer column of strings
        ([{"role": "assistant", "content": "22"}], 22, 1.0),  # TRL's conversational completion
        ({"role": "assistant", "content": "It is 22."}, 22, 1.0),
        ("2", 22, 0.0),
        ("222", 22, 0.0),
        ("12", 22, 0.0),
        ("22 or 23", 22, 0.0),  # two numbers state nothing
        ("17 + 5 = 22", 22, 0.0),
        ("", 22, 0.0),
        ("twenty-two", 22, 0.0),
        ("-22", 22, 0.0),
    ],
)
def test_answer_exact_match_on_hand_written_replies(completion, answer, reward):
    assert ca.answer_exact_match(["q"], [completion], answer=[answer]) == [reward]


def test_answer_exact_match_checks_lengths_and_completion_types():
    with pytest.raises(ValueError, match="1 prompts, 2 completions and 1 answers"):
        ca.answer_exact_match(["q"], ["1", "2"], answer=[1])
    with pytest.raises(TypeError, match="got int"):
        ca.answer_exact_match(["q"], [22], answer=[22])


def test_prompts_and_sft_texts_are_chatml_as_written_out_by_hand():
    tokenizer = ca.chat_tokenizer()
    row = {
        "prompt": [{"role": "user", "content": "What is 17 + 5?"}],
        "completion": [{"role": "assistant", "content": "12"}],
    }
    prompt = "<|im_start|>user\nWhat is 17 + 5?<|im_end|>\n<|im_start|>assistant\n"
    assert ca.render_prompt(tokenizer, row["prompt"]) == prompt
    assert ca.render_sft_text(tokenizer, row) == prompt + "12"
    # with EOS appended (the SFT stage does) it is the template's rendering of the whole
    # conversation up to the end of the assistant's turn, as text and as token ids
    whole = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    assert whole == prompt + "12<|im_end|>\n"
    text_ids = tokenizer(ca.render_sft_text(tokenizer, row), add_special_tokens=False)["input_ids"]
    whole_ids = tokenizer.apply_chat_template(
        row["prompt"] + row["completion"], tokenize=True, return_dict=False
    )
    assert text_ids + [tokenizer.eos_token_id] == list(whole_ids)[:-1]
    # digits are single tokens and the ChatML markers are single special tokens
    assert tokenizer.convert_ids_to_tokens(text_ids[-2:]) == ["1", "2"]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_accuracy_against_an_answer_column():
    got = arithmetic_accuracy(
        ["p1", "p2"], ["5", "7"], ["5", "4", "6", "6"], k=2, n_shown=1, answers=[5, 6]
    )
    assert got["accuracy"] == 0.5 and got["accuracy_sampled"] == 0.75
    assert got["samples"] == [{"prompt": "p1", "completion": "5", "correct": True}]
