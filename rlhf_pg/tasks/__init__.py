"""Data the offline pipeline makes for itself: a review corpus from a grammar, arithmetic
problems with an exact-match reward (as ``"a+b="`` lines, and as conversations with an
``answer`` column in :mod:`.chat_arithmetic`), byte-level BPE and ChatML tokenizers, and
dataset loading with column checks.

    from rlhf_pg.data import build_corpus, sentiment_prompts, train_tokenizer
"""

from .arithmetic import (
    arithmetic_prompts,
    build_arithmetic_corpus,
    exact_match_reward,
    split_problems,
)
from .chat_arithmetic import answer_exact_match
from .reviews import build_corpus, extract_prompt, sentiment_prompts
from .tokenizer import train_chat_tokenizer, train_tokenizer

__all__ = [
    "answer_exact_match",
    "arithmetic_prompts",
    "build_arithmetic_corpus",
    "build_corpus",
    "exact_match_reward",
    "extract_prompt",
    "sentiment_prompts",
    "split_problems",
    "train_chat_tokenizer",
    "train_tokenizer",
]
