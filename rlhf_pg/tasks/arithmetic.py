"""Addition problems ("12+7=19") with a controllable error rate, and an exact-match reward.

The SFT model learns from answers that are wrong a fraction ``error_rate`` of the time,
so it starts imperfect and an RL run with :func:`exact_match_reward` (a verifiable
reward, no reward model) has room to improve. Problems are split once, by operand
pair, into train and held-out sets: held-out pairs never appear in the SFT corpus.
"""

from __future__ import annotations

import random
import re

_PROMPT = re.compile(r"^\s*(\d+)\s*([+-])\s*(\d+)\s*=\s*$")
_LEADING_INT = re.compile(r"^\s*(-?\d+)")


def split_problems(
    max_operand: int = 49, held_out_fraction: float = 0.2, seed: int = 0
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """All pairs ``(a, b)`` with ``0 <= a, b <= max_operand``, shuffled and cut into (train, held_out)."""
    if max_operand < 1:
        raise ValueError(f"split_problems: max_operand must be >= 1, got {max_operand}")
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(
            f"split_problems: held_out_fraction must be in (0, 1), got {held_out_fraction}"
        )
    pairs = [(a, b) for a in range(max_operand + 1) for b in range(max_operand + 1)]
    random.Random(seed).shuffle(pairs)
    n_held = max(1, int(round(held_out_fraction * len(pairs))))
    return pairs[n_held:], pairs[:n_held]


def format_prompt(a: int, b: int) -> str:
    return f"{a}+{b}="


def build_arithmetic_corpus(
    n: int,
    error_rate: float = 0.3,
    max_operand: int = 49,
    held_out_fraction: float = 0.2,
    seed: int = 0,
) -> list[str]:
    """``n`` lines ``"a+b=c"`` over the train pairs; a fraction ``error_rate`` has ``c`` off by 1-10."""
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"build_arithmetic_corpus: error_rate must be in [0, 1], got {error_rate}")
    if n < 1:
        raise ValueError(f"build_arithmetic_corpus: n must be >= 1, got {n}")
    train, _ = split_problems(max_operand, held_out_fraction, seed)
    rng = random.Random(seed + 1)
    lines = []
    for _ in range(n):
        a, b = rng.choice(train)
        c = a + b
        if rng.random() < error_rate:
            c = max(0, c + rng.choice((-1, 1)) * rng.randint(1, 10))
            if c == a + b:  # clamped onto the right answer: push it the other way
                c += rng.randint(1, 10)
        lines.append(f"{format_prompt(a, b)}{c}")
    return lines


def arithmetic_prompts(
    split: str = "held_out", max_operand: int = 49, held_out_fraction: float = 0.2, seed: int = 0
) -> list[str]:
    """Prompts ``"a+b="`` of one split (``train`` or ``held_out``), in a fixed order."""
    train, held = split_problems(max_operand, held_out_fraction, seed)
    if split not in ("train", "held_out"):
        raise ValueError(f"arithmetic_prompts: split must be 'train' or 'held_out', got {split!r}")
    return [format_prompt(a, b) for a, b in (train if split == "train" else held)]


def solve(prompt: str) -> int:
    """The right answer to ``"a+b="`` (or ``"a-b="``); a clear error for anything else."""
    m = _PROMPT.match(prompt)
    if m is None:
        raise ValueError(f"not an arithmetic prompt of the form 'a+b=': {prompt!r}")
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return a + b if op == "+" else a - b


def exact_match_reward(prompts: list[str], completions: list[str]) -> list[float]:
    """1.0 where the completion starts with the right integer (and nothing but whitespace,
    end of text, or a non-digit after it), else 0.0. A reward callable for the LM trainer."""
    if len(prompts) != len(completions):
        raise ValueError(
            f"exact_match_reward: {len(prompts)} prompts but {len(completions)} completions"
        )
    rewards = []
    for prompt, completion in zip(prompts, completions):
        m = _LEADING_INT.match(completion)
        rewards.append(1.0 if m is not None and int(m.group(1)) == solve(prompt) else 0.0)
    return rewards
