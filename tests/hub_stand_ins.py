"""Tiny local stand-ins for the hub's gpt2, its tokenizer and sentiment classifiers.

Saved with ``save_pretrained`` so the tests load them through the very same
``from_pretrained`` calls that the hub names go through.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from rlhf_pg.tasks.tokenizer import train_tokenizer

LABELS = {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}
TINY_GPT2 = {"n_positions": 64, "n_embd": 32, "n_layer": 1, "n_head": 2}


def gpt2_like_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """Like the hub's gpt2 tokenizer: EOS but no pad token, right padding."""
    trained = train_tokenizer(texts, vocab_size=400)
    return PreTrainedTokenizerFast(
        tokenizer_object=trained.backend_tokenizer, eos_token="<|endoftext|>"
    )


def save_gpt2(path: Path, tok: PreTrainedTokenizerFast) -> None:
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), **TINY_GPT2)).save_pretrained(path)
    tok.save_pretrained(path)


def save_gpt2_classifier(path: Path, tok: PreTrainedTokenizerFast) -> None:
    config = GPT2Config(
        vocab_size=len(tok), num_labels=2, pad_token_id=tok.eos_token_id, **TINY_GPT2, **LABELS
    )
    torch.manual_seed(0)
    GPT2ForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)


def save_bert_classifier(path: Path, texts: list[str]) -> None:
    """A 2-label BERT-style classifier with its own WordPiece vocabulary, like distilbert-imdb."""
    words = sorted({w.strip(".,!?").lower() for t in texts for w in t.split()} - {""})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?", *words]
    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
        **LABELS,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
