"""Data the offline pipeline makes for itself: a review corpus from a grammar, arithmetic
problems with an exact-match reward, a byte-level BPE tokenizer, and dataset loading
with column checks.

    from rlhf_pg.data import build_corpus, sentiment_prompts, train_tokenizer
"""

from .arithmetic import (
    arithmetic_prompts,
    build_arithmetic_corpus,
    exact_match_reward,
    split_problems,
)
from .reviews import build_corpus, extract_prompt, sentiment_prompts
from .tokenizer import train_tokenizer

__all__ = [
    "arithmetic_prompts",
    "build_arithmetic_corpus",
    "build_corpus",
    "exact_match_reward",
    "extract_prompt",
    "sentiment_prompts",
    "split_problems",
    "train_tokenizer",
]
