"""A causal LM plus a scalar value head, saved as a ``save_pretrained`` directory.

The directory is an ordinary transformers (or peft adapter) directory with two
extra files beside the weights: ``value_head.safetensors`` and
``value_head.json``. Plain ``AutoModelForCausalLM.from_pretrained(dir)`` loads
the policy for generation and ignores them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedModel,
)

from ..hf.models import disable_dropout, hidden_size
from ..utils.io import atomic_save_safetensors, atomic_write_json, load_safetensors

HEAD_WEIGHTS = "value_head.safetensors"
HEAD_CONFIG = "value_head.json"
CRITIC_DIR = "critic"


def _is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


class ValueHead(nn.Module):
    """Linear map from the last hidden state to one scalar per token, zero-initialised
    so the critic starts at V = 0 and does not disturb the trunk's first updates."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.summary(hidden_states.to(self.summary.weight.dtype)).squeeze(-1)


class PolicyWithValueHead(nn.Module):
    """Policy LM, optional value head on its trunk or on a separate critic backbone.

    Args:
        pretrained_model: any ``AutoModelForCausalLM`` (or a peft model around one).
        with_value_head: build a value head (False for the critic-free estimators).
        critic_model: optional separate backbone for the values (e.g. a copy of
            the reward model); its last hidden state feeds the head. When it is a
            sequence classifier with one label, the head starts from its score layer.
    """

    def __init__(
        self,
        pretrained_model: PreTrainedModel,
        *,
        with_value_head: bool = True,
        critic_model: PreTrainedModel | None = None,
    ) -> None:
        super().__init__()
        self.pretrained_model = pretrained_model
        self.critic_model = critic_model
        self.reference_adapter: str | None = None  # peft adapter holding the reference
        self.resized_embeddings = False  # the trainer grew the vocabulary (a pad token)
        self.v_head: ValueHead | None = None
        # value head on the trunk: read the hidden state detached (PPOConfig.value_head_detach)
        self.detach_value_input = False
        if with_value_head:
            trunk = critic_model if critic_model is not None else pretrained_model
            self.v_head = ValueHead(hidden_size(trunk))
            if critic_model is not None:
                _init_head_from_score(self.v_head, critic_model)
        elif critic_model is not None:
            raise ValueError(
                "critic_model was given but with_value_head=False (no critic to train)"
            )

    @property
    def config(self):
        return self.pretrained_model.config

    @property
    def is_peft(self) -> bool:
        return _is_peft(self.pretrained_model)

    @property
    def _no_split_modules(self) -> list[str]:
        """The transformer blocks of the policy (and critic): FSDP2's wrapping units."""
        names: list[str] = []
        for model in (self.pretrained_model, self.critic_model):
            names += list(getattr(model, "_no_split_modules", None) or [])
        return sorted(set(names))

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        *,
        logits_to_keep: int = 0,
        with_values: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Logits and values of the last ``logits_to_keep`` positions (all if 0)."""
        on_trunk = with_values and self.v_head is not None and self.critic_model is None
        captured: list[Tensor] = []
        head = self.pretrained_model.get_output_embeddings()
        with lm_head_input(head, captured) if on_trunk else contextlib.nullcontext():
            out = self.pretrained_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                logits_to_keep=logits_to_keep,
                use_cache=False,
            )
        values = None
        if with_values and self.v_head is not None:
            if self.critic_model is None:
                hidden = captured[0]  # the last hidden state at the kept positions
                if self.detach_value_input:  # the value loss stops at the head
                    hidden = hidden.detach()
            else:
                # the trunk alone: a classifier's pooling would need a pad id and wastes work
                hidden = self.critic_model.base_model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    use_cache=False,
                ).last_hidden_state
                if logits_to_keep:
                    hidden = hidden[:, -logits_to_keep:]
            values = self.v_head(hidden)
        return out.logits, values

    def generate(self, *args, **kwargs):
        return self.pretrained_model.generate(*args, **kwargs)

    # ----------------------------------------------------------------- saving
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        tokenizer=None,
        state_dict: dict[str, Tensor] | None = None,
    ) -> None:
        """Write the policy (full model, or peft adapters) plus the head and critic.

        ``state_dict``: this wrapper's full weights by name, when its own parameters are
        shards (DeepSpeed ZeRO-3, FSDP2: ``accelerator.get_state_dict(model)``)."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        parts = _split_state_dict(state_dict)
        if self.is_peft:
            # adapters only, plus the embeddings when the trainer grew them (a pad token),
            # so they load back onto the original base
            self.pretrained_model.save_pretrained(
                str(path),
                selected_adapters=[self.pretrained_model.active_adapter],
                save_embedding_layers=self.resized_embeddings,
                state_dict=parts.get("pretrained_model"),
            )
        else:
            self.pretrained_model.save_pretrained(
                str(path), state_dict=parts.get("pretrained_model")
            )
        if tokenizer is not None:
            tokenizer.save_pretrained(str(path))
        meta = {
            "has_value_head": self.v_head is not None,
            "separate_critic": False,
            "peft": self.is_peft,
            "vocab_size": self.pretrained_model.get_input_embeddings().num_embeddings,
        }
        if self.v_head is not None:
            head = parts.get("v_head") or self.v_head.state_dict()
            atomic_save_safetensors(
                {k: v.contiguous() for k, v in head.items()}, path / HEAD_WEIGHTS
            )
        if self.critic_model is not None:
            meta["separate_critic"] = True
            self.critic_model.save_pretrained(
                str(path / CRITIC_DIR), state_dict=parts.get("critic_model")
            )
        atomic_write_json(path / HEAD_CONFIG, meta)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        base_model: PreTrainedModel | str | None = None,
        is_trainable: bool = True,
        **model_kwargs,
    ) -> PolicyWithValueHead:
        """Load a directory written by :meth:`save_pretrained`.

        For a peft adapter directory, ``base_model`` (a model or a path) is the
        model the adapters were trained on; by default the path recorded in the
        adapter config is used.
        """
        path = Path(path)
        meta_file = path / HEAD_CONFIG
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        if (path / "adapter_config.json").exists():
            from peft import PeftConfig, PeftModel

            if base_model is None:
                base_model = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
            if isinstance(base_model, (str, os.PathLike)):
                base_model = AutoModelForCausalLM.from_pretrained(str(base_model), **model_kwargs)
            vocab = meta.get("vocab_size")
            if vocab and base_model.get_input_embeddings().num_embeddings != vocab:
                base_model.resize_token_embeddings(vocab, mean_resizing=False)  # rows saved
            policy = PeftModel.from_pretrained(base_model, str(path), is_trainable=is_trainable)
        else:
            policy = AutoModelForCausalLM.from_pretrained(str(path), **model_kwargs)
        critic = None
        if meta.get("separate_critic"):
            critic = _load_any(path / CRITIC_DIR, **model_kwargs)
        model = cls(policy, with_value_head=meta.get("has_value_head", False), critic_model=critic)
        if model.v_head is not None:
            model.v_head.load_state_dict(load_safetensors(path / HEAD_WEIGHTS))
        disable_dropout(model)
        return model


def _split_state_dict(state_dict: dict[str, Tensor] | None) -> dict[str, dict[str, Tensor]]:
    """``{"pretrained_model": {...}, "v_head": {...}, "critic_model": {...}}`` by prefix."""
    parts: dict[str, dict[str, Tensor]] = {}
    for name, tensor in (state_dict or {}).items():
        child, _, rest = name.partition(".")
        parts.setdefault(child, {})[rest] = tensor
    return parts


@contextlib.contextmanager
def lm_head_input(head: nn.Module, captured: list[Tensor]) -> Iterator[None]:
    """Append the input of ``head`` (the LM head) to ``captured`` during the block.

    A causal LM applies its head to the final (normed) hidden state of exactly the positions
    it keeps (``logits_to_keep``): what the value head reads. Taking it there instead of
    asking for ``output_hidden_states`` keeps no other layer's activations alive and puts
    no work on positions whose values are never used.
    """
    handle = head.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        yield
    finally:
        handle.remove()


def _load_any(path: Path, **kwargs) -> PreTrainedModel:
    arch = (json.loads((path / "config.json").read_text()).get("architectures") or [""])[0]
    if arch.endswith("ForSequenceClassification"):
        return AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
    if arch.endswith(("ForCausalLM", "LMHeadModel")):
        return AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    return AutoModel.from_pretrained(str(path), **kwargs)


def _init_head_from_score(head: ValueHead, critic: nn.Module) -> None:
    score = getattr(critic, "score", None)
    if isinstance(score, nn.Linear) and score.out_features == 1:
        with torch.no_grad():
            head.summary.weight.copy_(score.weight)
            head.summary.bias.copy_(score.bias if score.bias is not None else 0.0)
