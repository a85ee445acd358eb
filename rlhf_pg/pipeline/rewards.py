"""Reward callables the PPO recipe can name: a reward model or a multi-label classifier
(both from :mod:`rlhf_pg.reward_scoring`), built-in functions, or a weighted combination,
in the ``[(weight, fn), ...]`` form :class:`rlhf_pg.lm.CombinedReward` takes."""

from __future__ import annotations

from collections.abc import Callable

from ..data.arithmetic import exact_match_reward
from ..gold import gold_reward

REWARD_FUNCTIONS: dict[str, Callable] = {"exact_match": exact_match_reward, "vader": gold_reward}


def load_reward_model(path: str, label: str | None, device="cpu") -> Callable:
    """A scalar reward model (centred on SFT samples) or, with ``label``, one label's logit."""
    from transformers import AutoConfig

    from ..reward_scoring import ClassifierReward, RewardModelScorer

    num_labels = AutoConfig.from_pretrained(path).num_labels
    if num_labels == 1:
        if label is not None:
            raise ValueError(
                f"reward_model_label={label!r} was given but {path} has one output; leave it unset"
            )
        scorer = RewardModelScorer(path, device=device)
        scorer.__name__ = "reward_model"
        return scorer
    if label is None:
        raise ValueError(
            f"{path} is a classifier with {num_labels} labels; set reward_model_label to the "
            "label whose logit is the reward (e.g. POSITIVE)"
        )
    scorer = ClassifierReward(path, label=label, device=device)
    scorer.__name__ = f"classifier_{label}"
    return scorer


def build_reward(args, device="cpu") -> list[tuple[float, Callable]]:
    """The weighted reward list of a :class:`~rlhf_pg.pipeline.args.PPORecipeArgs`."""
    parts: list[tuple[float, Callable]] = []
    if args.reward_model_path is not None:
        rm = load_reward_model(args.reward_model_path, args.reward_model_label, device)
        parts.append((args.reward_model_weight, rm))
    if args.reward_fn != "none":
        parts.append((args.reward_fn_weight, REWARD_FUNCTIONS[args.reward_fn]))
    return parts
