"""Addition in chat format: a user asks a sum, the assistant answers with the number.

Rows are what a user brings from TRL: a ``prompt`` column holding a conversation
(``[{"role": "user", "content": "What is 17 + 5?"}]``) and an ``answer`` column (the
true sum, an int) that a verifiable reward reads; the SFT rows add a ``completion``
column (``[{"role": "assistant", "content": "22"}]``), TRL's conversational
prompt-completion format.

The SFT answers come from a sloppy tutor, so that RL with :func:`answer_exact_match`
has something to fix, also under greedy decoding: on a problem whose ones digits carry
(``17 + 5``), the tutor forgets the carry with probability ``carry_slip`` (answers 12),
and any answer is off by 1-10 with probability ``error_rate``. With ``carry_slip`` above
one half the wrong answer is the most frequent one on carry problems, so the SFT model
gets them wrong even by argmax, while the right answer is still sampled often enough for
an exact-match reward to find it.

Problems are split once, by operand pair, into train and held-out sets
(:func:`rlhf_pg.tasks.arithmetic.split_problems`): held-out pairs never appear in the SFT
data or the RL prompts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from .arithmetic import split_problems

QUESTIONS = (
    "What is {a} + {b}?",
    "Compute {a} + {b}.",
    "{a} + {b} = ?",
    "Add {a} and {b}.",
    "How much is {a} plus {b}?",
)
_INTEGER = re.compile(r"-?\d+")


def has_carry(a: int, b: int) -> bool:
    """True when the ones digits of ``a`` and ``b`` sum to 10 or more."""
    return a % 10 + b % 10 >= 10


def tutor_answer(a: int, b: int, rng: random.Random, carry_slip: float, error_rate: float) -> int:
    """The sloppy tutor's answer to ``a + b``: the carry forgotten with probability
    ``carry_slip`` (carry problems only), then off by 1-10 with probability ``error_rate``."""
    answer = a + b
    if has_carry(a, b) and rng.random() < carry_slip:
        answer -= 10
    if rng.random() < error_rate:
        wrong = max(0, answer + rng.choice((-1, 1)) * rng.randint(1, 10))
        answer = wrong if wrong != answer else answer + rng.randint(1, 10)
    return answer


def question(a: int, b: int, rng: random.Random) -> list[dict[str, str]]:
    """A one-turn conversation asking ``a + b`` in one of :data:`QUESTIONS`' phrasings."""
    return [{"role": "user", "content": rng.choice(QUESTIONS).format(a=a, b=b)}]


def problem_rows(
    split: str = "train",
    max_operand: int = 19,
    held_out_fraction: float = 0.2,
    seed: int = 0,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{"prompt": conversation, "answer": a + b}``, one per operand pair of ``split``
    (``train`` or ``held_out``, the split fixed by ``seed``), in a fixed order."""
    if split not in ("train", "held_out"):
        raise ValueError(f"problem_rows: split must be 'train' or 'held_out', got {split!r}")
    train, held = split_problems(max_operand, held_out_fraction, seed)
    pairs = train if split == "train" else held
    rng = random.Random(f"{seed}-{split}")  # phrasings independent of the split's shuffle
    rows = [{"prompt": question(a, b, rng), "answer": a + b} for a, b in pairs]
    return rows[:limit]


def sft_rows(
    n: int,
    carry_slip: float = 0.6,
    error_rate: float = 0.2,
    max_operand: int = 19,
    held_out_fraction: float = 0.2,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """``n`` SFT rows ``{"prompt", "completion", "answer"}`` over the train pairs, the
    completion being the tutor's (possibly wrong) answer and ``answer`` the true sum."""
    for name, p in (("carry_slip", carry_slip), ("error_rate", error_rate)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"sft_rows: {name} must be in [0, 1], got {p}")
    if n < 1:
        raise ValueError(f"sft_rows: n must be >= 1, got {n}")
    train, _ = split_problems(max_operand, held_out_fraction, seed)
    rng = random.Random(seed + 1)
    rows = []
    for _ in range(n):
        a, b = rng.choice(train)
        reply = str(tutor_answer(a, b, rng, carry_slip, error_rate))
        rows.append(
            {
                "prompt": question(a, b, rng),
                "completion": [{"role": "assistant", "content": reply}],
                "answer": a + b,
            }
        )
    return rows


def as_dataset(rows: list[dict[str, Any]]):
    """The rows as a ``datasets.Dataset`` (conversation columns become lists of structs)."""
    from datasets import Dataset

    return Dataset.from_list(rows)


def render_prompt(tokenizer, conversation: Sequence[dict[str, str]]) -> str:
    """The text the policy continues: the conversation through the tokenizer's chat template
    with the generation prompt (the opening of the assistant's turn)."""
    return tokenizer.apply_chat_template(
        list(conversation), tokenize=False, add_generation_prompt=True
    )


def render_sft_text(tokenizer, row: dict[str, Any]) -> str:
    """An SFT row as one text, EOS left off: the rendered prompt followed by the reply.
    With the tokenizer's EOS appended (the SFT stage does) it is the chat template's
    rendering of the whole conversation up to the end of the assistant's turn."""
    return render_prompt(tokenizer, row["prompt"]) + row["completion"][-1]["content"]


def completion_text(completion: Any) -> str:
    """A completion as text: a string as is, an assistant message (or a list of messages,
    TRL's conversational completion) as its (last) content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(
        f"a completion must be a string or assistant message(s), got {type(completion).__name__}"
    )


def parse_answer(text: str) -> int | None:
    """The integer a reply states: the one integer in it, or None when it has none or
    several (``"22"``, ``" 22."`` and ``"It is 22"`` state 22; ``"22 or 23"`` states nothing)."""
    found = _INTEGER.findall(text)
    return int(found[0]) if len(found) == 1 else None


def answer_exact_match(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[Any], **_: Any
) -> list[float]:
    """1.0 where the completion states exactly the row's ``answer``, else 0.0.

    A reward function in TRL's form: the row's ``answer`` column arrives as a keyword
    argument, other columns are ignored; completions may be text or assistant messages."""
    if not (len(prompts) == len(completions) == len(answer)):
        raise ValueError(
            f"answer_exact_match: {len(prompts)} prompts, {len(completions)} completions "
            f"and {len(answer)} answers; they must match"
        )
    return [
        1.0 if parse_answer(completion_text(c)) == int(a) else 0.0
        for c, a in zip(completions, answer)
    ]


def chat_tokenizer(vocab_size: int = 320):
    """The task's Qwen2-style chat tokenizer (:func:`.tokenizer.train_chat_tokenizer`),
    digits split, trained on every phrasing of :data:`QUESTIONS` and the role names; it does
    not depend on the SFT data, so every stage and seed shares one vocabulary."""
    from .tokenizer import train_chat_tokenizer

    numbers = [(a, b) for a in range(0, 100, 7) for b in range(0, 100, 11)]
    texts = [q.format(a=a, b=b) for q in QUESTIONS for a, b in numbers]
    return train_chat_tokenizer(texts + ["user\n", "assistant\n", "system\n"], vocab_size)
