"""Reward callables ``(prompts, completions) -> list[float]`` backed by sequence classifiers.

- :class:`RewardModelScorer`: a scalar reward model (``num_labels=1``) trained here, scored on
  ``prompt + completion + EOS`` exactly as :func:`rlhf_pg.reward_model.train_reward_model`
  trained it, read at the last non-pad token, optionally shifted and scaled so SFT samples
  score about 0 with unit spread (``reward_mean`` / ``reward_std`` stored in its config).
- :class:`ClassifierReward`: a hub-style sentiment classifier with several labels
  (e.g. NEGATIVE/POSITIVE); the reward is the logit of one named label.
Both load through ``AutoModelForSequenceClassification.from_pretrained`` with
``trust_remote_code`` off, so a hub name and a local folder take the same path.
"""

from __future__ import annotations

import os

import torch


def _load(path: str | os.PathLike, device: str | torch.device):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


@torch.no_grad()
def _logits(model, tokenizer, texts: list[str], batch_size: int, max_length: int) -> torch.Tensor:
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            # Right padding keeps each row's position ids those of an unpadded pass (as in
            # RewardTrainer's collator); left padding would shift GPT-2's absolute positions.
            padding_side="right",
            truncation=True,
            max_length=max_length,
            add_special_tokens=False,
        ).to(device)
        out.append(model(**enc).logits.float().cpu())
    return torch.cat(out) if out else torch.zeros((0, model.config.num_labels))


def _check_lengths(name: str, prompts: list[str], completions: list[str]) -> None:
    if len(prompts) != len(completions):
        raise ValueError(f"{name}: {len(prompts)} prompts but {len(completions)} completions")


class RewardModelScorer:
    """A trained scalar reward model as a reward callable."""

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        normalize: bool = True,
        batch_size: int = 64,
        max_length: int = 256,
    ) -> None:
        self.model, self.tokenizer = _load(path, device)
        if self.model.config.num_labels != 1:
            raise ValueError(
                f"RewardModelScorer: {path} has num_labels={self.model.config.num_labels}; a reward "
                "model needs num_labels=1 (use ClassifierReward for a multi-label classifier)"
            )
        config = self.model.config
        self.mean = float(getattr(config, "reward_mean", 0.0)) if normalize else 0.0
        self.std = float(getattr(config, "reward_std", 1.0)) if normalize else 1.0
        self.batch_size, self.max_length = batch_size, max_length

    def score_texts(self, texts: list[str]) -> list[float]:
        """Scores of full texts (EOS appended, as in training)."""
        eos = self.tokenizer.eos_token or ""
        texts = [t if t.endswith(eos) else t + eos for t in texts]
        raw = _logits(self.model, self.tokenizer, texts, self.batch_size, self.max_length)[:, 0]
        return ((raw - self.mean) / self.std).tolist()

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        _check_lengths("RewardModelScorer", prompts, completions)
        return self.score_texts([p + c for p, c in zip(prompts, completions)])


class ClassifierReward:
    """The logit of one label of a sequence classifier (e.g. ``POSITIVE``) as the reward."""

    def __init__(
        self,
        path: str | os.PathLike,
        label: str = "POSITIVE",
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        max_length: int = 512,
    ) -> None:
        self.model, self.tokenizer = _load(path, device)
        label2id = {str(k): int(v) for k, v in (self.model.config.label2id or {}).items()}
        if label not in label2id:
            raise ValueError(
                f"ClassifierReward: label {label!r} is not a label of {path}; its labels: {sorted(label2id)}"
            )
        self.index = label2id[label]
        self.batch_size, self.max_length = batch_size, max_length

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        _check_lengths("ClassifierReward", prompts, completions)
        texts = [p + c for p, c in zip(prompts, completions)]
        logits = _logits(self.model, self.tokenizer, texts, self.batch_size, self.max_length)
        return logits[:, self.index].tolist()
