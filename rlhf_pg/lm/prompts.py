"""Prompts of the trainer: the rows of a prompt dataset, their checks, and the one prompt
sampler (shuffled passes, each process taking its share of every global batch).

A prompt dataset is a ``datasets.Dataset`` (or a list of row dicts) with a ``prompt``
column holding, in every row, either a string or a conversation
(``[{"role": "user", "content": "..."}, ...]``); a plain ``list[str]`` of prompts is a
dataset with only that column. Conversations are rendered with the tokenizer's chat
template (``add_generation_prompt=True``) and encoded without adding special tokens again,
so the policy sees exactly ``tokenizer.apply_chat_template(conversation,
add_generation_prompt=True)``. The other columns (e.g. ``answer``) travel with each row to
the reward functions as keyword arguments (:mod:`rlhf_pg.lm.rewards`).

The sampler's position lives in :class:`TrainerState`, so a checkpoint resumes on the very
next prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

T = TypeVar("T")
PROMPT_COLUMN = "prompt"
# names the reward functions receive besides the dataset's columns: a column may not take one
RESERVED_COLUMNS = ("prompts", "completions", "completion_ids")
VALID_PROMPT = "a string or a conversation: a list of {'role': str, 'content': str} messages"


@dataclass
class PromptRows:
    """Rows of a prompt dataset, aligned by index.

    ``texts`` is what the policy is conditioned on: the prompt string, or the conversation
    rendered by the chat template. ``conversations`` holds the conversations themselves
    (None for string prompts) and ``columns`` the rows' other columns.
    """

    texts: list[str]
    conversations: list[list[dict[str, str]]] | None = None
    columns: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def conversational(self) -> bool:
        return self.conversations is not None

    @property
    def add_special_tokens(self) -> bool:
        """A chat template already writes the special tokens (BOS) a model expects."""
        return not self.conversational

    def select(self, indices: Sequence[int]) -> PromptRows:
        idx = list(indices)
        return PromptRows(
            [self.texts[i] for i in idx],
            None if self.conversations is None else [self.conversations[i] for i in idx],
            {name: [values[i] for i in idx] for name, values in self.columns.items()},
        )

    def repeat(self, k: int) -> PromptRows:
        """Each row ``k`` times in a row (the rollout's prompt-major order)."""
        return self.select([i for i in range(len(self)) for _ in range(k)])


def _is_message(m: Any) -> bool:
    return (
        isinstance(m, Mapping)
        and isinstance(m.get("role"), str)
        and isinstance(m.get("content"), str)
    )


def _is_conversation(p: Any) -> bool:
    return (
        isinstance(p, Sequence)
        and not isinstance(p, (str, bytes))
        and len(p) > 0
        and all(_is_message(m) for m in p)
    )


def _columns_of(data: Any, column: str) -> tuple[list, dict[str, list]]:
    """(the prompt column, the other columns) of a Dataset, a list of row dicts, or a list
    of prompts."""
    if hasattr(data, "column_names") and not isinstance(data, Mapping):  # a datasets.Dataset
        names = list(data.column_names)
        if column not in names:
            raise ValueError(
                f"prompt dataset has no {column!r} column (it has {names}); the {column!r} "
                f"column must hold {VALID_PROMPT}"
            )
        return list(data[column]), {c: list(data[c]) for c in names if c != column}
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise TypeError(
            f"prompts must be a list of prompts, a datasets.Dataset with a {column!r} column "
            f"or a list of row dicts, got {type(data).__name__}"
        )
    if len(data) and all(isinstance(row, Mapping) for row in data):  # a list of row dicts
        names = list(data[0])
        for i, row in enumerate(data):
            if list(row) != names or column not in row:
                raise ValueError(
                    f"prompt row {i} has keys {list(row)}; every row needs the keys of row 0 "
                    f"{names}, including {column!r}"
                )
        return [row[column] for row in data], {
            c: [row[c] for row in data] for c in names if c != column
        }
    return list(data), {}


def as_prompt_rows(data: Any, tokenizer, column: str = PROMPT_COLUMN) -> PromptRows:
    """Check and render a prompt dataset (see the module doc); raises a one-line
    ``ValueError`` / ``TypeError`` naming the column, the row and what would be valid."""
    if isinstance(data, PromptRows):
        return data
    prompts, columns = _columns_of(data, column)
    for name in columns:
        if name in RESERVED_COLUMNS:
            raise ValueError(
                f"prompt dataset column {name!r} clashes with an argument the reward functions "
                f"receive ({', '.join(RESERVED_COLUMNS)}); rename the column"
            )
    if not prompts:
        return PromptRows([], None, columns)
    conversational = not isinstance(prompts[0], str)
    for i, p in enumerate(prompts):
        ok = _is_conversation(p) if conversational else isinstance(p, str)
        if not ok:
            kind = "conversations" if conversational else "strings"
            raise TypeError(
                f"column {column!r} row {i} is {type(p).__name__} ({str(p)[:60]!r}) but row 0 "
                f"makes it a column of {kind}; each row must be {VALID_PROMPT}, all of one kind"
            )
    if not conversational:
        return PromptRows(list(prompts), None, columns)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"column {column!r} holds conversations but the tokenizer has no chat_template; "
            "give a tokenizer with a chat template (tokenizer.chat_template = ...) or string "
            "prompts"
        )
    conversations = [[dict(m) for m in p] for p in prompts]
    texts = [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
        for c in conversations
    ]
    return PromptRows(texts, conversations, columns)


@dataclass
class TrainerState:
    step: int = 0  # completed optimisation steps
    data_epoch: int = 0  # passes over the prompt list in train()
    data_pos: int = 0  # next prompt of the current pass (global index)


def next_prompts(
    prompts: Sequence[T],
    state: TrainerState,
    *,
    batch_size: int,
    rank: int,
    num_processes: int,
    seed: int,
) -> list[T]:
    """This process's ``batch_size`` prompts of the next global batch; advances ``state``.

    Pass ``e`` is the permutation seeded with ``seed + e``, the same on every process, so
    the processes' shares never overlap and a resumed run draws the same prompts."""
    n_global = batch_size * num_processes
    batch: list[T] = []
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
