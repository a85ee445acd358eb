"""Byte-level BPE trained on a generated corpus, wrapped as a transformers tokenizer.

The pad token differs from EOS (a model trained with pad == EOS never learns to stop,
because EOS positions are masked out of the loss), and ``padding_side="left"`` is
given to the constructor so that it is saved and restored with the tokenizer.

:func:`train_chat_tokenizer` makes the Qwen2-style variant for chat tasks: ChatML's
``<|im_start|>`` / ``<|im_end|>`` markers, ``<|im_end|>`` as EOS (the end of an assistant
turn is where a completion stops), ``<|endoftext|>`` as pad, and the ChatML template.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
# ChatML, as Qwen2 tokenizers ship it (without Qwen's default system message)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _train_bpe(
    texts: Iterable[str], vocab_size: int, split_digits: bool, special_tokens: list[str]
) -> Tokenizer:
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(
            f"train_tokenizer: vocab_size must be >= {256 + len(special_tokens)} "
            f"(256 bytes + {len(special_tokens)} special tokens), got {vocab_size}"
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
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return bpe


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, split_digits: bool = False
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``; ``split_digits`` keeps every digit its own token
    (numbers stay digit by digit, which a tiny model needs to learn addition)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(texts, vocab_size, split_digits, [EOS_TOKEN, PAD_TOKEN]),
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=1024,
    )


def train_chat_tokenizer(
    texts: Iterable[str], vocab_size: int = 320, split_digits: bool = True
) -> PreTrainedTokenizerFast:
    """A Qwen2-style chat tokenizer trained on ``texts``: no BOS, ``<|im_end|>`` as EOS,
    ``<|endoftext|>`` as pad, left padding and the ChatML template."""
    return PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(texts, vocab_size, split_digits, CHATML_SPECIALS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
        padding_side="left",
        model_max_length=1024,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: str | os.PathLike) -> None:
    tokenizer.save_pretrained(str(path))
