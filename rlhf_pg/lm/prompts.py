"""Prompt limits and the one prompt sampler of the trainer: shuffled passes over a prompt list, each process
taking its share of every global batch. Its position lives in :class:`TrainerState`, so a
checkpoint resumes on the very next prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TrainerState:
    step: int = 0  # completed optimisation steps
    data_epoch: int = 0  # passes over the prompt list in train()
    data_pos: int = 0  # next prompt of the current pass (global index)


def next_prompts(
    prompts: Sequence[str],
    state: TrainerState,
    *,
    batch_size: int,
    rank: int,
    num_processes: int,
    seed: int,
) -> list[str]:
    """This process's ``batch_size`` prompts of the next global batch; advances ``state``.

    Pass ``e`` is the permutation seeded with ``seed + e``, the same on every process, so
    the processes' shares never overlap and a resumed run draws the same prompts."""
    n_global = batch_size * num_processes
    batch: list[str] = []
    while len(batch) < n_global:
        order = torch.randperm(
            len(prompts), generator=torch.Generator().manual_seed(seed + state.data_epoch)
        )
        take = order[state.data_pos : state.data_pos + n_global - len(batch)].tolist()
        batch += [prompts[i] for i in take]
        state.data_pos += len(take)
        if state.data_pos >= len(prompts):
            state.data_epoch, state.data_pos = state.data_epoch + 1, 0
    return batch[rank * batch_size : (rank + 1) * batch_size]


def prompt_limit(context: int | None, config) -> int:
    """The longest prompt in tokens: ``max_prompt_length``, or the model's context window
    minus ``max_new_tokens``; raises when prompt and response cannot fit the window."""
    limit = config.max_prompt_length or (context - config.max_new_tokens if context else 10**9)
    if limit < 1 or (context and limit + config.max_new_tokens > context):
        raise ValueError(
            f"max_prompt_length={config.max_prompt_length} plus max_new_tokens="
            f"{config.max_new_tokens} exceeds the model's context window of {context} tokens"
        )
    return limit
