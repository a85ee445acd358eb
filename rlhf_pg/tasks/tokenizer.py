"""Byte-level BPE trained on a generated corpus, wrapped as a transformers tokenizer.

The pad token differs from EOS (a model trained with pad == EOS never learns to stop,
because EOS positions are masked out of the loss), and ``padding_side="left"`` is
given to the constructor so that it is saved and restored with the tokenizer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, split_digits: bool = False
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``; ``split_digits`` keeps every digit its own token
    (numbers stay digit by digit, which a tiny model needs to learn addition)."""
    if vocab_size < 258:
        raise ValueError(
            f"train_tokenizer: vocab_size must be >= 258 (256 bytes + 2), got {vocab_size}"
        )
    bpe = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split_digits:
        bpe.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        bpe.pre_tokenizer = byte_level
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=1024,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: str | os.PathLike) -> None:
    tokenizer.save_pretrained(str(path))
