"""A rollout (one batch of sampled completions) and the forward passes that evaluate it.

Token layout as in :mod:`rlhf_pg.hf.tokens`: a LEFT-padded prompt (``query_ids``, width P)
followed by a RIGHT-padded response (``response_ids``, width R). The response logits are
the last R + 1 logits of the concatenation, shifted by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from ..core import entropy
from ..hf.tokens import position_ids
from .value_head import PolicyWithValueHead


@dataclass
class Rollout:
    """One batch of completions (this process's share), everything aligned by row.

    Rows are ordered prompt-major: rows ``i*k .. i*k+k-1`` are the k samples of
    prompt i (``group_size`` = k). Tensors are None until computed.
    """

    query_ids: Tensor  # (B, P) long, left-padded
    query_mask: Tensor  # (B, P) bool
    response_ids: Tensor  # (B, R) long, right-padded after the first stop token
    response_mask: Tensor  # (B, R) bool, True up to and including the stop token
    prompts: list[str]  # as the policy saw them (a conversation rendered by the chat template)
    completions: list[str]
    has_stop: Tensor  # (B,) bool, the response ended with a stop token
    group_size: int = 1
    conversations: list[list[dict[str, str]]] | None = None  # conversational prompts, else None
    columns: dict[str, list] = field(default_factory=dict)  # the prompt rows' other columns
    logprobs: Tensor | None = None  # (B, R) policy log-probs under logits / T
    ref_logprobs: Tensor | None = None  # (B, R) reference log-probs; stays None at kl_coef 0
    values: Tensor | None = None  # (B, R) V(prompt + response[:t])
    entropy: Tensor | None = None  # (B, R) entropy of the sampling distribution
    generate_seconds: float = 0.0
    forward_seconds: float = 0.0
    reward_seconds: float = 0.0

    def __len__(self) -> int:
        return self.query_ids.shape[0]

    @property
    def response_lengths(self) -> Tensor:
        return self.response_mask.sum(dim=1)

    @property
    def completion_messages(self) -> list[list[dict[str, str]]]:
        """Each completion as a one-message conversation ``[{"role": "assistant", ...}]``."""
        return [[{"role": "assistant", "content": c}] for c in self.completions]

    def completion_ids(self) -> list[list[int]]:
        """The valid response tokens of each row (the stop token included where it stopped)."""
        ids, mask = self.response_ids.cpu(), self.response_mask.cpu()
        return [row[valid].tolist() for row, valid in zip(ids, mask)]

    def select(self, rows: Tensor) -> Rollout:
        """The sub-rollout of the given row indices (tensors and lists alike)."""
        idx = rows.tolist()
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                out[f.name] = v[rows.to(v.device)]
            elif isinstance(v, list):
                out[f.name] = [v[i] for i in idx]
            elif isinstance(v, dict):  # columns
                out[f.name] = {name: [col[i] for i in idx] for name, col in v.items()}
            else:
                out[f.name] = v
        return replace(self, **out)

    def to(self, device: torch.device | str) -> Rollout:
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return replace(self, **moved)


# Response positions per float32 chunk: at most (B, LOGPROB_CHUNK, V) floats exist at once
# instead of several (B, R, V) copies (scaled logits, log-softmax) of a 50k-token vocabulary.
LOGPROB_CHUNK = 32


def token_logprobs(
    logits: Tensor, tokens: Tensor, temperature: float, *, with_entropy: bool = False
) -> tuple[Tensor, Tensor | None]:
    r"""Log-probs of ``tokens`` (B, R) under :math:`\mathrm{softmax}(z / T)` of ``logits``
    (B, R, V), as :math:`z_a / T - \operatorname{logsumexp}(z / T)` in float32, computed over
    chunks of positions; and the entropy of each position's distribution when asked."""
    logprobs, entropies = [], []
    for start in range(0, tokens.shape[1], LOGPROB_CHUNK):
        chunk = slice(start, start + LOGPROB_CHUNK)
        z = logits[:, chunk].float() / temperature
        taken = z.gather(-1, tokens[:, chunk].unsqueeze(-1)).squeeze(-1)
        logprobs.append(taken - torch.logsumexp(z, dim=-1))
        if with_entropy:
            entropies.append(entropy(z))
    return torch.cat(logprobs, dim=1), torch.cat(entropies, dim=1) if with_entropy else None


def response_forward(
    model,
    query_ids: Tensor,
    query_mask: Tensor,
    response_ids: Tensor,
    response_mask: Tensor,
    *,
    temperature: float,
    with_values: bool = False,
    with_entropy: bool = False,
    **model_kwargs,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """One forward pass over prompt + response.

    Returns ``(logprobs, values, entropy)`` for the R response tokens: the log-probs of
    the taken tokens under ``logits / temperature`` (float32), the values
    V(prompt + response[:t]) (or None), and the entropy of the sampling distribution
    at each position (or None). Only the response positions go through the LM head.
    """
    ids = torch.cat([query_ids, response_ids], dim=1)
    mask = torch.cat([query_mask, response_mask], dim=1)
    pos = position_ids(mask)
    width = response_ids.shape[1]
    if isinstance(getattr(model, "module", model), PolicyWithValueHead):  # maybe DDP-wrapped
        logits, values = model(
            ids, mask.long(), pos, logits_to_keep=width + 1, with_values=with_values
        )
    else:
        logits = model(
            input_ids=ids,
            attention_mask=mask.long(),
            position_ids=pos,
            logits_to_keep=width + 1,
            use_cache=False,
            **model_kwargs,
        ).logits
        values = None
    logprobs, ent = token_logprobs(
        logits[:, :-1], response_ids, temperature, with_entropy=with_entropy
    )
    if values is not None:
        values = values[:, -width - 1 : -1].float()
    return logprobs, values, ent


@torch.no_grad()
def evaluate_rollout(
    policy: PolicyWithValueHead,
    ref_model,
    rollout: Rollout,
    *,
    temperature: float,
    with_values: bool,
    with_reference: bool = True,
) -> None:
    """Fill in what the rollout lacks: the policy's log-probs, values and entropy (one pass;
    none when the sampling pass already gave the log-probs and no values are wanted) and,
    when ``with_reference``, the reference log-probs (``ref_model``, or the policy's base
    with adapters disabled)."""
    tokens = (rollout.query_ids, rollout.query_mask, rollout.response_ids, rollout.response_mask)
    if rollout.logprobs is None or (with_values and rollout.values is None):
        rollout.logprobs, rollout.values, rollout.entropy = response_forward(
            policy, *tokens, temperature=temperature, with_values=with_values, with_entropy=True
        )
    if with_reference and rollout.ref_logprobs is None:
        rollout.ref_logprobs = reference_logprobs(policy, ref_model, tokens, temperature)


@torch.no_grad()
def reference_logprobs(policy: PolicyWithValueHead, ref_model, tokens, temperature: float):
    """Log-probs of the response tokens under the reference: an explicit model, or (LoRA)
    the policy's base with the frozen reference adapter, or with adapters disabled."""
    if ref_model is not None:
        return response_forward(ref_model, *tokens, temperature=temperature)[0]
    peft_model = policy.pretrained_model
    if policy.reference_adapter is not None:  # peft's per-row adapter choice; no state change
        names = [policy.reference_adapter] * tokens[0].shape[0]
        return response_forward(peft_model, *tokens, temperature=temperature, adapter_names=names)[
            0
        ]
    with peft_model.disable_adapter():
        return response_forward(peft_model, *tokens, temperature=temperature)[0]


def check_rollout(rollout: Rollout, config) -> None:
    """The rollout splits into the configured minibatches and, for RLOO/GRPO, into groups."""
    n = len(rollout)
    chunks = config.num_minibatches * config.gradient_accumulation_steps
    if n % chunks:
        raise ValueError(
            f"rollout has {n} rows, not divisible into num_minibatches * "
            f"gradient_accumulation_steps = {chunks} equal parts"
        )
    if config.estimator in ("rloo", "grpo") and rollout.group_size != config.samples_per_prompt:
        raise ValueError(
            f"estimator={config.estimator!r} needs groups of samples_per_prompt="
            f"{config.samples_per_prompt} rows per prompt; the rollout has group_size="
            f"{rollout.group_size}"
        )
