"""Prompt datasets and reward keyword arguments: conversations through the chat template,
the rows' other columns reaching the reward functions, None ("does not apply") in combined
rewards, async rewards awaited concurrently, and the one-line errors on bad data."""

import asyncio
import math

import pytest
import torch
from datasets import Dataset
from lm_fixtures import make_trainer
from model_families import load_family

from rlhf_pg.lm import CombinedReward, PPOConfig, PPOTrainer
from rlhf_pg.lm.prompts import as_prompt_rows
from rlhf_pg.lm.rollout import Rollout

QUESTIONS = ["what is twelve plus seven", "i loved the music", "the movie was great"]
ANSWERS = ["nineteen", "story", "wonderful"]


def chat_dataset(system: bool = False) -> Dataset:
    def conv(q):
        head = [{"role": "system", "content": "the film"}] if system else []
        return head + [{"role": "user", "content": q}]

    return Dataset.from_dict(
        {
            "prompt": [conv(q) for q in QUESTIONS],
            "answer": ANSWERS,
            "level": [1, 2, 3],
        }
    )


def chat_trainer(tmp_path, family="qwen2", reward=None, prompts=None, **overrides):
    model, tok, _ = load_family(family, tmp_path)
    settings = dict(batch_size=3, max_new_tokens=4, samples_per_prompt=2, estimator="rloo")
    settings.update(overrides)
    return make_trainer(
        tok, model, reward=reward, prompts=chat_dataset() if prompts is None else prompts,
        **settings,
    )  # fmt: skip


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_conversational_prompt_tokens_are_the_chat_templates(tmp_path, family):
    """The policy sees exactly apply_chat_template(..., add_generation_prompt=True): the
    Llama fixture's template writes BOS itself, so encoding its text again with special
    tokens would give two."""
    trainer = chat_trainer(tmp_path, family)
    data = chat_dataset(system=True)
    rollout = trainer.generate(as_prompt_rows(data, trainer.tokenizer))
    for i, conv in enumerate(data["prompt"]):
        expected = trainer.tokenizer.apply_chat_template(
            conv, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for row in (2 * i, 2 * i + 1):  # two samples per prompt, prompt-major
            got = rollout.query_ids[row][rollout.query_mask[row]].tolist()
            assert got == list(expected)
            assert rollout.conversations[row] == conv
    # a conversation's completion also comes back as an assistant message
    assert rollout.completion_messages[0] == [
        {"role": "assistant", "content": rollout.completions[0]}
    ]


def test_reward_receives_row_columns_and_completion_ids(tmp_path):
    seen = {}

    def correct(prompts, completions, answer, completion_ids, **kwargs):
        seen.update(
            prompts=prompts, completions=completions, answer=answer, ids=completion_ids, **kwargs
        )
        return [float(c[0]["content"].strip() == a) for c, a in zip(completions, answer)]

    trainer = chat_trainer(tmp_path, reward=correct)
    rollout = trainer.generate(trainer.next_prompts())
    trainer.score(rollout)
    # the reference: each conversation's row in the dataset, looked up by its question
    row_of = {q: i for i, q in enumerate(QUESTIONS)}
    rows = [row_of[conv[-1]["content"]] for conv in seen["prompts"]]
    assert seen["answer"] == [ANSWERS[i] for i in rows]
    assert seen["level"] == [i + 1 for i in rows]
    assert sorted(set(rows)) == [0, 1, 2] and len(rows) == 6
    assert [m[0]["role"] for m in seen["completions"]] == ["assistant"] * 6
    for ids, text in zip(seen["ids"], rollout.completions):  # token ids decode to the text
        assert trainer.tokenizer.decode(ids, skip_special_tokens=True) == text
        assert 1 <= len(ids) <= 4


def test_signature_decides_what_a_reward_gets(tmp_path):
    calls = {}

    def legacy(prompts, completions):  # the original two-argument form
        calls["legacy"] = (prompts, completions)
        return [1.0] * len(prompts)

    def named(prompts, completions, answer):
        calls["named"] = answer
        return [0.0] * len(prompts)

    trainer = make_trainer(
        reward=[legacy, named],
        prompts=[{"prompt": "the movie", "answer": "a"}, {"prompt": "i loved the", "answer": "b"}],
        batch_size=2,
    )
    rollout = trainer.generate(trainer.next_prompts())
    total, _ = trainer.score(rollout)
    assert calls["legacy"] == (rollout.prompts, rollout.completions)  # text, no kwargs
    assert all(isinstance(p, str) for p in calls["legacy"][0])
    assert calls["named"] == [{"the movie": "a", "i loved the": "b"}[p] for p in rollout.prompts]
    assert total.tolist() == [1.0, 1.0]


def _rollout(n: int, **fields) -> Rollout:
    return Rollout(
        torch.zeros(n, 1, dtype=torch.long),
        torch.ones(n, 1, dtype=torch.bool),
        torch.arange(n)[:, None],
        torch.ones(n, 1, dtype=torch.bool),
        [f"p{i}" for i in range(n)],
        [f"c{i}" for i in range(n)],
        torch.ones(n, dtype=torch.bool),
        **fields,
    )


def test_none_means_not_applicable_in_a_weighted_sum():
    def math_only(prompts, completions, kind):
        return [2.0 if k == "math" else None for k in kind]

    def length(prompts, completions):
        return [float(len(c)) for c in completions]

    kind = ["math", "chat", "math"]
    total, parts = CombinedReward([(3.0, math_only), (0.5, length)])(
        _rollout(3, columns={"kind": kind})
    )
    # reference by hand: 3 * 2 + 0.5 * 2 on math rows, 0.5 * 2 alone on the chat row
    assert total.tolist() == [7.0, 1.0, 7.0]
    assert math.isnan(parts["math_only"][1]) and parts["math_only"][0] == 2.0
    assert torch.isfinite(total).all()


def test_a_completion_no_reward_applies_to_is_an_error():
    def sometimes(prompts, completions):
        return [1.0, None]

    with pytest.raises(ValueError, match="no reward applies to completion 1.*sometimes"):
        CombinedReward(sometimes)(_rollout(2))


def test_none_component_is_averaged_over_applicable_rows_in_training_metrics(tmp_path):
    def half(prompts, completions):
        return [1.0 if i % 2 == 0 else None for i in range(len(prompts))]

    def zero(prompts, completions):
        return [0.0] * len(prompts)

    trainer = make_trainer(reward=[half, zero], max_steps=1)
    metrics = trainer.train()[0]
    assert metrics["reward/half"] == 1.0 and metrics["reward/zero"] == 0.0
    assert metrics["score/mean"] == 0.5  # the total: 1 on half the rows, 0 elsewhere


def test_async_rewards_are_awaited_concurrently():
    events = []

    def make(name):
        async def fn(prompts, completions):
            events.append(f"{name} start")
            await asyncio.sleep(0.05)
            events.append(f"{name} end")
            return [1.0] * len(prompts)

        fn.__name__ = name
        return fn

    total, parts = CombinedReward([make("a"), make("b")])(_rollout(2))
    # both started before either finished: the two sleeps overlapped
    assert events[:2] == ["a start", "b start"] and sorted(events[2:]) == ["a end", "b end"]
    assert total.tolist() == [2.0, 2.0] and set(parts) == {"a", "b"}


def test_async_rewards_also_work_inside_a_running_event_loop():
    async def judge(prompts, completions):
        await asyncio.sleep(0)
        return [0.5] * len(prompts)

    async def main():
        return CombinedReward(judge)(_rollout(2))

    total, _ = asyncio.run(main())
    assert total.tolist() == [0.5, 0.5]


NOT_A_MODEL = object()  # the errors come before the model is touched


def _build(tokenizer, prompts, reward=None):
    return PPOTrainer(
        PPOConfig(batch_size=2, progress_bar=False, use_cpu=True),
        NOT_A_MODEL,
        tokenizer,
        reward=reward or (lambda prompts, completions: [0.0] * len(prompts)),
        prompts=prompts,
    )


@pytest.mark.parametrize(
    ("family", "prompts", "message"),
    [
        ("qwen2", Dataset.from_dict({"question": ["a"]}), "no 'prompt' column .*'question'"),
        ("qwen2", Dataset.from_dict({"prompt": [1, 2]}), "column 'prompt' row 0 is int"),
        ("qwen2", ["a", [{"role": "user", "content": "b"}]], "column 'prompt' row 1 is list"),
        (
            "qwen2",
            [[{"role": "user", "content": "a"}], [{"role": "user"}]],
            "column 'prompt' row 1 is list",
        ),
        ("qwen2", Dataset.from_dict({"prompt": ["a"], "completions": ["b"]}), "'completions'"),
        ("qwen2", [{"prompt": "a"}, {"text": "b"}], "prompt row 1 has keys"),
        ("gpt2", chat_dataset(), "column 'prompt' holds conversations but the tokenizer has no"),
    ],
)
def test_bad_prompt_data_is_one_line_before_model_work(tmp_path, family, prompts, message):
    _, tok, _ = load_family(family, tmp_path)
    with pytest.raises((ValueError, TypeError), match=message) as err:
        _build(tok, prompts)
    assert "\n" not in str(err.value)


def test_reward_needing_a_missing_column_fails_before_model_work(tmp_path):
    _, tok, _ = load_family("qwen2", tmp_path)

    def needs_solution(prompts, completions, solution):
        return [0.0] * len(prompts)

    with pytest.raises(ValueError, match=r"needs_solution needs argument\(s\) \['solution'\]"):
        _build(tok, chat_dataset(), reward=needs_solution)


def test_evaluation_encodes_conversations_as_training_does(tmp_path, monkeypatch):
    """Every prompt encoding of the held-out evaluation (sampling, KL, reward tokens) is the
    chat template's token ids, as in the trainer's rollouts (with Llama's BOS only once)."""
    import rlhf_pg.hf.sampling
    import rlhf_pg.stages.evaluate
    from rlhf_pg.hf.tokens import encode_prompts
    from rlhf_pg.stages.evaluate import evaluate_policy

    encoded = []

    def spy(*args, **kwargs):
        out = encode_prompts(*args, **kwargs)
        encoded.extend(out)
        return out

    for module in (rlhf_pg.hf.sampling, rlhf_pg.stages.evaluate):
        monkeypatch.setattr(module, "encode_prompts", spy)
    model, tok, _ = load_family("llama", tmp_path)
    tok.pad_token = tok.unk_token  # a pad token of its own vocabulary, no resize needed
    data = chat_dataset(system=True)
    result = evaluate_policy(
        model.eval(), tok, as_prompt_rows(data, tok), task="dataset", max_new_tokens=3,
        reward=lambda prompts, completions, answer: [float(a == "story") for a in answer],
        reference=model, with_table=True,
    )  # fmt: skip
    expected = [
        tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False)
        for c in data["prompt"]
    ]
    assert len(encoded) == 9  # sampling, KL, reward rollout: 3 prompts each
    assert [list(e) for e in encoded] == [list(x) for x in expected] * 3
    assert [row["prompt"] for row in result["completions"]] == data["prompt"]
    assert result["reward/<lambda>"] == pytest.approx(1 / 3)  # the answers reached the reward
