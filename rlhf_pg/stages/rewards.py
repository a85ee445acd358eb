"""Reward callables the PPO recipe can name: a reward model or a multi-label classifier
(both from :mod:`rlhf_pg.hf.scoring`), built-in functions, or a weighted combination,
in the ``[(weight, fn), ...]`` form :class:`rlhf_pg.lm.CombinedReward` takes."""

from __future__ import annotations

from collections.abc import Callable

from ..hf.scoring import load_reward_model
from ..tasks.arithmetic import exact_match_reward
from ..tasks.chat_arithmetic import answer_exact_match
from ..tasks.gold import gold_reward

REWARD_FUNCTIONS: dict[str, Callable] = {
    "exact_match": exact_match_reward,  # "a+b=" prompts: the answer is solved from the prompt
    "answer_exact_match": answer_exact_match,  # reads the dataset's answer column
    "vader": gold_reward,
}


def build_reward(args, device="cpu") -> list[tuple[float, Callable]]:
    """The weighted reward list of a :class:`~rlhf_pg.stages.ppo_args.PPORecipeArgs`."""
    parts: list[tuple[float, Callable]] = []
    if args.reward_model_path is not None:
        rm = load_reward_model(args.reward_model_path, args.reward_model_label, device)
        parts.append((args.reward_model_weight, rm))
    if args.reward_fn != "none":
        parts.append((args.reward_fn_weight, REWARD_FUNCTIONS[args.reward_fn]))
    return parts
