"""Byte-level BPE tokenizer: save/load round trip, left padding, pad distinct from EOS."""

import pytest
from transformers import AutoTokenizer

from rlhf_pg.tasks.arithmetic import build_arithmetic_corpus
from rlhf_pg.tasks.reviews import build_corpus
from rlhf_pg.tasks.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(2000, seed=0)


def test_save_and_reload_round_trip(corpus, tmp_path):
    tok = train_tokenizer(corpus, vocab_size=512)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = corpus[:50] + ["Unseen words: zebra, 42, café!"]
    for text in texts:
        ids = loaded(text, add_special_tokens=False)["input_ids"]
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
        assert loaded.decode(ids) == text
    assert loaded.padding_side == "left"
    assert loaded.pad_token_id != loaded.eos_token_id
    assert len(loaded) == len(tok) <= 512


def test_left_padding_and_eos_is_one_token(corpus):
    tok = train_tokenizer(corpus, vocab_size=512)
    batch = tok(["The film", "I watched this movie last night"], padding=True)
    short, long_ = batch["input_ids"]
    assert short[0] == tok.pad_token_id and short[-1] != tok.pad_token_id
    assert batch["attention_mask"][0][0] == 0 and all(batch["attention_mask"][1])
    assert (
        tok("great" + tok.eos_token, add_special_tokens=False)["input_ids"][-1] == tok.eos_token_id
    )
    # The corpus is small in vocabulary, so BPE learns whole words as single tokens.
    assert len(tok(corpus[0])["input_ids"]) < len(corpus[0].split()) * 2


def test_split_digits_keeps_every_digit_a_token():
    tok = train_tokenizer(build_arithmetic_corpus(2000), vocab_size=300, split_digits=True)
    assert tok.tokenize("123+45=168") == list("123+45=168")


def test_too_small_vocab_is_an_error(corpus):
    with pytest.raises(ValueError, match="vocab_size must be >= 258"):
        train_tokenizer(corpus, vocab_size=100)
