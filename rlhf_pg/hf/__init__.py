"""HuggingFace-model plumbing shared by every stage: tokens (pad token, prompt encoding,
padding, positions, stop truncation), sampling (one function) and reward scoring (one
reward model with token and text entry points)."""

from .models import context_length, disable_dropout, fuse_gelu, hidden_size
from .sampling import Samples, generate_completions, sample_tokens, sample_with_logprobs
from .scoring import ClassifierReward, RewardModel, load_reward_model
from .tokens import (
    PAD_TOKEN,
    decode_rows,
    encode_prompts,
    ensure_pad_token,
    left_pad,
    position_ids,
    truncate_at_stop,
)

__all__ = [
    "PAD_TOKEN",
    "ClassifierReward",
    "RewardModel",
    "Samples",
    "context_length",
    "decode_rows",
    "disable_dropout",
    "encode_prompts",
    "fuse_gelu",
    "hidden_size",
    "ensure_pad_token",
    "generate_completions",
    "left_pad",
    "load_reward_model",
    "position_ids",
    "sample_tokens",
    "sample_with_logprobs",
    "truncate_at_stop",
]
