"""Sequence scores: a reward model, any Python callable, or a weighted sum of them.

A reward callable has the signature ``fn(prompts, completions) -> list[float]``
(one finite number per completion). A :class:`RewardModel` is such a callable
too, and when it shares the policy's tokenizer the trainer scores the rollout's
tokens directly (no decode / re-encode).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .rollout import Rollout, ensure_pad_token
from .value_head import disable_dropout

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


class RewardModel:
    """Score completions with a sequence classifier that has ONE output (num_labels=1).

    The score is read at the last non-pad token of ``prompt + completion``;
    inputs are right-padded so positions match an unpadded pass.

    Args:
        model: an ``AutoModelForSequenceClassification`` with ``num_labels == 1``.
        tokenizer: its tokenizer; None means it shares the policy's tokenizer,
            and the trainer passes token ids instead of text.
        batch_size: rows per forward pass.
    """

    def __init__(self, model, tokenizer=None, *, batch_size: int = 64) -> None:
        num_labels = getattr(model.config, "num_labels", None)
        if num_labels != 1:
            raise ValueError(
                f"reward model {type(model).__name__} has num_labels={num_labels}; a reward "
                "model must output one scalar (num_labels=1)"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval().requires_grad_(False)
        disable_dropout(self.model)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.__name__ = f"RewardModel({type(model).__name__})"
        if tokenizer is not None:
            ensure_pad_token(tokenizer, model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> RewardModel:
        self.model.to(device)
        return self

    def set_pad_token_id(self, pad_id: int) -> None:
        self.model.config.pad_token_id = pad_id

    @torch.no_grad()
    def score_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Scores of rows of token ids (any padding) given their validity mask."""
        pad_id = self.model.config.pad_token_id
        if pad_id is None:
            raise ValueError("the reward model's config has no pad_token_id; set one")
        # move valid tokens to the left (stable), so the last valid token is the last non-pad
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        ids = ids.gather(1, order)
        mask = mask.gather(1, order)
        width = int(mask.sum(dim=1).max())
        ids = torch.where(mask, ids, torch.full_like(ids, pad_id))[:, :width]
        mask = mask[:, :width]
        scores = []
        for start in range(0, ids.shape[0], self.batch_size):
            chunk = slice(start, start + self.batch_size)
            out = self.model(
                input_ids=ids[chunk].to(self.device),
                attention_mask=mask[chunk].long().to(self.device),
            )
            scores.append(out.logits[:, 0].float().cpu())
        return torch.cat(scores)

    def score_rollout(self, rollout: Rollout) -> Tensor:
        ids = torch.cat([rollout.query_ids, rollout.response_ids], dim=1)
        mask = torch.cat([rollout.query_mask, rollout.response_mask], dim=1)
        return self.score_tokens(ids, mask)

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        if self.tokenizer is None:
            raise ValueError(
                f"{self.__name__} was built without a tokenizer; pass one to score text"
            )
        enc = self.tokenizer([p + c for p, c in zip(prompts, completions)])["input_ids"]
        width = max(len(e) for e in enc)
        ids = torch.zeros((len(enc), width), dtype=torch.long)
        mask = torch.zeros((len(enc), width), dtype=torch.bool)
        for i, e in enumerate(enc):
            ids[i, : len(e)] = torch.as_tensor(e, dtype=torch.long)
            mask[i, : len(e)] = True
        return self.score_tokens(ids, mask).tolist()


class CombinedReward:
    """Weighted sum of reward callables / reward models: ``sum_i w_i * fn_i``.

    Accepts one callable, or a list of callables and ``(weight, callable)`` pairs.
    Calling it on a rollout returns the total (B,) and each component's scores.
    """

    def __init__(self, spec: RewardSpec) -> None:
        items = [spec] if callable(spec) else list(spec)
        if not items:
            raise ValueError("reward list is empty; give at least one reward callable")
        self.parts: list[tuple[float, Any]] = []
        for i, item in enumerate(items):
            weight, fn = item if isinstance(item, tuple) else (1.0, item)
            if not callable(fn):
                raise TypeError(f"reward {i} is not callable: {fn!r}")
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
                raise TypeError(f"reward {i} weight must be a number, got {weight!r}")
            self.parts.append((float(weight), fn))

    def __call__(self, rollout: Rollout, tokenizer=None) -> tuple[Tensor, dict[str, Tensor]]:
        total = torch.zeros(len(rollout))
        components: dict[str, Tensor] = {}
        for weight, fn in self.parts:
            name = reward_name(fn)
            if isinstance(fn, RewardModel) and fn.tokenizer is None:
                if tokenizer is not None:
                    fn.set_pad_token_id(tokenizer.pad_token_id)
                scores = validate_scores(fn.score_rollout(rollout), len(rollout), name)
            else:
                raw = fn(list(rollout.prompts), list(rollout.completions))
                scores = validate_scores(raw, len(rollout), name)
            components[name] = scores
            total = total + weight * scores
        return total, components

    def models(self) -> list[RewardModel]:
        return [fn for _, fn in self.parts if isinstance(fn, RewardModel)]
