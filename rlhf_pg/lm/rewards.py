"""Sequence scores: a reward model, any Python callable, or a weighted sum of them.

A reward callable is called as ``fn(prompts, completions, **kwargs)`` and returns one
number per completion, or ``None`` for a completion it does not apply to:

- ``prompts`` / ``completions``: for string prompts, the prompt and completion texts; for
  conversational prompts (TRL's convention), the conversations and each completion as an
  assistant message ``[{"role": "assistant", "content": text}]``;
- ``kwargs``: the prompt row's other dataset columns (e.g. ``answer``) and
  ``completion_ids`` (each completion's token ids, the stop token included where it
  stopped). Which ones a callable gets is read from its signature (``inspect``): all of
  them with ``**kwargs``, else the ones it names. A plain ``fn(prompts, completions)`` gets
  none, so the original two-argument callables keep working unchanged.

``async def`` reward functions are awaited concurrently (``asyncio.gather``), so e.g. two
calls to a remote judge overlap. A :class:`~rlhf_pg.hf.RewardModel` is a reward too: when it
shares the policy's vocabulary the trainer scores the rollout's tokens directly (no decode /
re-encode), otherwise it reads the prompt text (chat-templated for conversations) plus the
completion text.

Combination with ``None``: the total of a completion is the weighted sum over the rewards
that apply to it, ``sum_{j: r_j != None} w_j * r_j`` (a skipped reward adds nothing; it is
not rescaled), and a completion no reward applies to is an error naming it. Components keep
NaN where their reward did not apply, and their logged means cover the applicable rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..hf.scoring import ClassifierReward, RewardModel
from .rollout import Rollout

RewardFn = Callable[..., Sequence[float | None]]
RewardSpec = RewardFn | Sequence[RewardFn | tuple[float, RewardFn]]
TEXT_SCORERS = (RewardModel, ClassifierReward)  # always read text: prompt as seen + completion


def reward_name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def validate_scores(scores: Any, n: int, name: str, *, allow_none: bool = False) -> Tensor:
    """Turn a callable's output into a (n,) float tensor, or raise naming the callable and
    index. With ``allow_none``, a ``None`` ("does not apply") becomes NaN."""
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
        if s is None and allow_none:
            out.append(math.nan)
            continue
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


def keyword_arguments(fn: Callable) -> tuple[set[str], set[str], bool]:
    """What a reward callable takes beyond ``(prompts, completions)``: (the keyword names
    it accepts, those of them without a default, whether it has ``**kwargs``). A callable
    whose signature cannot be read takes nothing more."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return set(), set(), False
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    named = [p for p in params if p.kind is p.KEYWORD_ONLY] + positional[2:]
    required = {p.name for p in named if p.default is p.empty}
    return {p.name for p in named}, required, var_kw


def _run_concurrently(awaitables: list) -> list:
    """Await all of them at once; from inside a running event loop (a notebook), in a
    worker thread with its own loop."""

    async def gather() -> list:
        return list(await asyncio.gather(*awaitables))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(gather())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, gather()).result()


class CombinedReward:
    """Weighted sum of reward callables / reward models: ``sum_i w_i * fn_i`` over the
    rewards that apply to each completion (module doc).

    Accepts one callable, or a list of callables and ``(weight, callable)`` pairs.
    Calling it on a rollout returns the total (B,) and each component's scores.
    """

    def __init__(self, spec: RewardSpec) -> None:
        if _is_pair(spec):
            spec = [spec]  # one (weight, callable) pair
        elif isinstance(spec, (str, bytes)) or not (callable(spec) or isinstance(spec, Sequence)):
            raise TypeError(
                f"reward must be a callable (prompts, completions, **kwargs) -> list[float], a "
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

    def check_arguments(self, columns: Sequence[str]) -> None:
        """Every keyword a reward callable requires is a column of the prompt data (or
        ``completion_ids``); raises naming the callable, the argument and the columns."""
        available = {"completion_ids", *columns}
        for _, fn in self.parts:
            if isinstance(fn, TEXT_SCORERS):
                continue
            _, required, _ = keyword_arguments(fn)
            missing = sorted(required - available)
            if missing:
                raise ValueError(
                    f"reward {reward_name(fn)} needs argument(s) {missing}, which the prompt "
                    f"data does not have; it has columns {sorted(columns)} (and every reward "
                    "gets completion_ids): add the column(s) or give the argument a default"
                )

    def _call(self, fn: Any, rollout: Rollout, kwargs: dict[str, list]) -> Any:
        """``fn``'s raw output (or an awaitable of it) on this rollout."""
        if isinstance(fn, TEXT_SCORERS):  # the text the policy saw + the completion
            return fn(list(rollout.prompts), list(rollout.completions))
        if rollout.conversations is not None:
            prompts, completions = list(rollout.conversations), rollout.completion_messages
        else:
            prompts, completions = list(rollout.prompts), list(rollout.completions)
        names, _, var_kw = keyword_arguments(fn)
        chosen = kwargs if var_kw else {k: v for k, v in kwargs.items() if k in names}
        return fn(prompts, completions, **chosen)

    def __call__(self, rollout: Rollout, tokenizer=None) -> tuple[Tensor, dict[str, Tensor]]:
        n = len(rollout)
        kwargs = {**rollout.columns, "completion_ids": rollout.completion_ids()}
        raw: list[Any] = []
        for _, fn in self.parts:
            if isinstance(fn, RewardModel) and (
                tokenizer is None or fn.shares_vocabulary(tokenizer)
            ):
                raw.append(
                    fn.score_responses(
                        rollout.query_ids,
                        rollout.query_mask,
                        rollout.response_ids,
                        rollout.response_mask,
                        rollout.has_stop,
                    )
                )
            else:
                raw.append(self._call(fn, rollout, kwargs))
        pending = [i for i, r in enumerate(raw) if inspect.isawaitable(r)]
        for i, result in zip(pending, _run_concurrently([raw[i] for i in pending])):
            raw[i] = result
        total = torch.zeros(n)
        applied = torch.zeros(n, dtype=torch.bool)
        components: dict[str, Tensor] = {}
        for (weight, fn), out in zip(self.parts, raw):
            name = reward_name(fn)
            scores = validate_scores(out, n, name, allow_none=not isinstance(fn, TEXT_SCORERS))
            components[name] = scores
            applies = ~torch.isnan(scores)
            total = total + torch.where(applies, weight * scores, torch.zeros_like(scores))
            applied |= applies
        if not applied.all():
            i = int((~applied).nonzero()[0])
            raise ValueError(
                f"no reward applies to completion {i} (every reward returned None for it: "
                f"{', '.join(components)}); each completion needs at least one score"
            )
        return total, components

    def models(self) -> list[RewardModel]:
        return [fn for _, fn in self.parts if isinstance(fn, RewardModel)]
