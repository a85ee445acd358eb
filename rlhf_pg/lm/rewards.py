"""Sequence scores: a reward model, any Python callable, or a weighted sum of them.

A reward callable has the signature ``fn(prompts, completions) -> list[float]``
(one finite number per completion). A :class:`~rlhf_pg.hf.RewardModel` is such a callable
too, and when it shares the policy's vocabulary the trainer scores the rollout's
tokens directly (no decode / re-encode), with the same convention as its text path.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..hf.scoring import RewardModel
from .rollout import Rollout

RewardFn = Callable[[list[str], list[str]], Sequence[float]]
RewardSpec = RewardFn | Sequence[RewardFn | tuple[float, RewardFn]]


def reward_name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def validate_scores(scores: Any, n: int, name: str) -> Tensor:
    """Turn a callable's output into a (n,) float tensor, or raise naming the callable and index."""
    if isinstance(scores, Tensor):
        scores = scores.detach().cpu().reshape(-1).tolist()
    elif hasattr(scores, "tolist") and not isinstance(scores, (str, bytes)):
        scores = scores.tolist()
    if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence):
        raise TypeError(
            f"reward {name} must return a list of {n} numbers, got {type(scores).__name__}"
        )
    if len(scores) != n:
        raise ValueError(f"reward {name} returned {len(scores)} scores for {n} completions")
    out = []
    for i, s in enumerate(scores):
        if isinstance(s, Tensor) and s.numel() == 1:
            s = s.item()
        if not isinstance(s, numbers.Real):
            raise TypeError(f"reward {name} returned a non-number at index {i}: {s!r}")
        if not math.isfinite(float(s)):
            raise ValueError(
                f"reward {name} returned {float(s)} at index {i}; scores must be finite"
            )
        out.append(float(s))
    return torch.tensor(out, dtype=torch.float32)


def _is_pair(spec: Any) -> bool:
    return (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], numbers.Real)
        and callable(spec[1])
    )


class CombinedReward:
    """Weighted sum of reward callables / reward models: ``sum_i w_i * fn_i``.

    Accepts one callable, or a list of callables and ``(weight, callable)`` pairs.
    Calling it on a rollout returns the total (B,) and each component's scores.
    """

    def __init__(self, spec: RewardSpec) -> None:
        if _is_pair(spec):
            spec = [spec]  # one (weight, callable) pair
        elif isinstance(spec, (str, bytes)) or not (callable(spec) or isinstance(spec, Sequence)):
            raise TypeError(
                f"reward must be a callable (prompts, completions) -> list[float], a "
                f"RewardModel, or a list of them / (weight, callable) pairs; got "
                f"{spec!r} ({type(spec).__name__})"
            )
        items = [spec] if callable(spec) else list(spec)
        if not items:
            raise ValueError("reward list is empty; give at least one reward callable")
        self.parts: list[tuple[float, Any]] = []
        for i, item in enumerate(items):
            weight, fn = item if isinstance(item, tuple) else (1.0, item)
            if not callable(fn):
                raise TypeError(f"reward {i} is not callable: {fn!r} ({type(fn).__name__})")
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
                raise TypeError(f"reward {i} weight must be a number, got {weight!r}")
            if not math.isfinite(weight):
                raise ValueError(f"reward {i} weight must be finite, got {weight!r}")
            self.parts.append((float(weight), fn))

    def __call__(self, rollout: Rollout, tokenizer=None) -> tuple[Tensor, dict[str, Tensor]]:
        total = torch.zeros(len(rollout))
        components: dict[str, Tensor] = {}
        for weight, fn in self.parts:
            name = reward_name(fn)
            if isinstance(fn, RewardModel) and (
                tokenizer is None or fn.shares_vocabulary(tokenizer)
            ):
                raw = fn.score_responses(
                    rollout.query_ids,
                    rollout.query_mask,
                    rollout.response_ids,
                    rollout.response_mask,
                    rollout.has_stop,
                )
                scores = validate_scores(raw, len(rollout), name)
            else:
                raw = fn(list(rollout.prompts), list(rollout.completions))
                scores = validate_scores(raw, len(rollout), name)
            components[name] = scores
            total = total + weight * scores
        return total, components

    def models(self) -> list[RewardModel]:
        return [fn for _, fn in self.parts if isinstance(fn, RewardModel)]
