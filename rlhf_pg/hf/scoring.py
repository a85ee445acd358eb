"""Sequence classifiers as rewards: ONE :class:`RewardModel` for scalar reward models, and
:class:`ClassifierReward` for hub classifiers with several labels.

The scoring convention is the one the reward model was trained with (TRL's
``RewardTrainer`` on non-conversational pairs): the text ``prompt + completion + EOS``,
tokenised with the tokenizer's own special tokens, read at the last token. Both entry
points follow it:

- :meth:`RewardModel.score_responses` takes the rollout's tokens (prompt tokens, response
  tokens with the stop token dropped, then EOS) and needs no decode / re-encode;
- :meth:`RewardModel.__call__` / :meth:`RewardModel.score_texts` take text.

So the same (prompt, completion) gets the same score through either (tested).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor

from .models import disable_dropout
from .tokens import ensure_pad_token


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """``(model, tokenizer)`` of a sequence classifier, ``trust_remote_code`` off."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _rows_to_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded ids and mask: positions match an unpadded pass (absolute embeddings)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, : len(r)] = True
    return ids, mask


@torch.no_grad()
def classifier_logits(model, ids: Tensor, mask: Tensor, batch_size: int) -> Tensor:
    """(B, num_labels) logits of rows of token ids with any padding, given their mask."""
    pad_id = model.config.pad_token_id
    if pad_id is None:
        raise ValueError("the classifier's config has no pad_token_id; set one")
    # move valid tokens to the left (stable): the last valid token becomes the last non-pad
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    ids, mask = ids.gather(1, order), mask.gather(1, order)
    width = int(mask.sum(dim=1).max())
    ids = torch.where(mask, ids, torch.full_like(ids, pad_id))[:, :width]
    mask = mask[:, :width]
    device = next(model.parameters()).device
    out = []
    for start in range(0, ids.shape[0], batch_size):
        chunk = slice(start, start + batch_size)
        logits = model(
            input_ids=ids[chunk].to(device), attention_mask=mask[chunk].long().to(device)
        ).logits
        out.append(logits.float().cpu())
    return torch.cat(out)


def _check_pairs(name: str, prompts: Sequence[str], completions: Sequence[str]) -> None:
    if len(prompts) != len(completions):
        raise ValueError(f"{name}: {len(prompts)} prompts but {len(completions)} completions")


class RewardModel:
    """A scalar reward model (``num_labels=1``) as a reward.

    Args:
        model: an ``AutoModelForSequenceClassification`` with one output.
        tokenizer: its tokenizer, needed for the text entry points; None when it shares
            the policy's tokenizer and only scores rollout tokens.
        normalize: subtract ``config.reward_mean`` and divide by ``config.reward_std``
            (stored by the reward-model stage, so SFT samples score about 0 +- 1).
        batch_size: rows per forward pass.
    """

    def __init__(
        self, model, tokenizer=None, *, normalize: bool = False, batch_size: int = 64
    ) -> None:
        num_labels = getattr(model.config, "num_labels", None)
        if num_labels != 1:
            raise ValueError(
                f"reward model {type(model).__name__} has num_labels={num_labels}; a reward "
                "model must output one scalar (num_labels=1); use ClassifierReward for a "
                "classifier with several labels"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval().requires_grad_(False)
        disable_dropout(self.model)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.mean = float(getattr(model.config, "reward_mean", 0.0)) if normalize else 0.0
        self.std = float(getattr(model.config, "reward_std", 1.0)) if normalize else 1.0
        self.__name__ = f"RewardModel({type(model).__name__})"
        if tokenizer is not None:
            ensure_pad_token(tokenizer, model)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, *, device: str | torch.device = "cpu", normalize=True
    ) -> RewardModel:
        model, tokenizer = load_classifier(path, device)
        return cls(model, tokenizer, normalize=normalize)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> RewardModel:
        self.model.to(device)
        return self

    @property
    def eos_token_id(self) -> int:
        eos = self.tokenizer.eos_token_id if self.tokenizer is not None else None
        eos = eos if eos is not None else self.model.config.eos_token_id
        if eos is None:
            raise ValueError(f"{self.__name__}: neither tokenizer nor config names an EOS token")
        return int(eos)

    def shares_vocabulary(self, tokenizer) -> bool:
        """Whether rollout tokens of ``tokenizer`` can be scored as they are."""
        if self.tokenizer is None:
            return True
        return self.tokenizer.get_vocab() == tokenizer.get_vocab()

    def score_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        """(B,) scores of rows of token ids (any padding) given their validity mask."""
        raw = classifier_logits(self.model, ids, mask, self.batch_size)[:, 0]
        return (raw - self.mean) / self.std

    def score_responses(
        self,
        query_ids: Tensor,
        query_mask: Tensor,
        response_ids: Tensor,
        response_mask: Tensor,
        has_stop: Tensor,
    ) -> Tensor:
        """Scores of sampled responses: prompt tokens + response without its stop token + EOS."""
        rows = torch.arange(response_ids.shape[0], device=response_ids.device)
        last = (response_mask.sum(dim=1) - 1).clamp(min=0)
        keep = response_mask.clone()
        keep[rows, last] &= ~has_stop.to(keep.device)  # the stop token is replaced by EOS
        eos = torch.full_like(response_ids[:, :1], self.eos_token_id)
        ids = torch.cat([query_ids, response_ids, eos], dim=1)
        mask = torch.cat([query_mask, keep, torch.ones_like(eos, dtype=torch.bool)], dim=1)
        return self.score_tokens(ids.cpu(), mask.cpu())

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """Scores of whole texts, EOS appended as in training."""
        if self.tokenizer is None:
            raise ValueError(
                f"{self.__name__} was built without a tokenizer; pass one to score text"
            )
        eos = self.tokenizer.eos_token or ""
        full = [t if t.endswith(eos) else t + eos for t in texts]
        rows = self.tokenizer(full)["input_ids"]
        ids, mask = _rows_to_batch(rows, self.tokenizer.pad_token_id)
        return self.score_tokens(ids, mask).tolist()

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        _check_pairs(self.__name__, prompts, completions)
        return self.score_texts([p + c for p, c in zip(prompts, completions)])


class ClassifierReward:
    """The logit of one label of a sequence classifier (e.g. ``POSITIVE``) as the reward.

    Text is tokenised with the tokenizer's special tokens (``[CLS] ... [SEP]`` for
    BERT-family models), as the classifier saw it in training.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        label: str = "POSITIVE",
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        max_length: int = 512,
    ) -> None:
        self.model, self.tokenizer = load_classifier(path, device)
        label2id = {str(k): int(v) for k, v in (self.model.config.label2id or {}).items()}
        if label not in label2id:
            raise ValueError(
                f"ClassifierReward: label {label!r} is not a label of {path}; "
                f"its labels: {sorted(label2id)}"
            )
        self.index = label2id[label]
        self.batch_size, self.max_length = batch_size, max_length
        self.__name__ = f"classifier_{label}"

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        _check_pairs("ClassifierReward", prompts, completions)
        texts = [p + c for p, c in zip(prompts, completions)]
        rows = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        ids, mask = _rows_to_batch(rows, self.tokenizer.pad_token_id)
        return classifier_logits(self.model, ids, mask, self.batch_size)[:, self.index].tolist()


def load_reward_model(path: str, label: str | None = None, device="cpu"):
    """A scalar reward model (normalised by its stored SFT statistics) or, with ``label``,
    one label's logit of a multi-label classifier; chosen by the model's ``num_labels``."""
    from transformers import AutoConfig

    num_labels = AutoConfig.from_pretrained(path).num_labels
    if num_labels == 1:
        if label is not None:
            raise ValueError(
                f"reward_model_label={label!r} was given but {path} has one output; leave it unset"
            )
        scorer = RewardModel.from_pretrained(path, device=device)
        scorer.__name__ = "reward_model"
        return scorer
    if label is None:
        raise ValueError(
            f"{path} is a classifier with {num_labels} labels; set reward_model_label to the "
            "label whose logit is the reward (e.g. POSITIVE)"
        )
    return ClassifierReward(path, label=label, device=device)
