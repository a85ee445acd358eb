"""Tiny GPT-2 models and a byte-level BPE tokenizer built on the fly for the LM tests (no hub)."""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

SENTENCES = [
    "the movie was great and the actors were wonderful",
    "the film was terrible and the plot was boring",
    "i loved the music and the story",
    "i hated the ending and the dialogue",
    "a good film with a bad script",
    "one two three four five six seven eight nine ten",
    "twelve plus seven is nineteen",
]
PROMPTS = ["the movie", "i loved the", "a good film with", "one two three", "the", "twelve plus"]


@functools.cache
def _tokenizer_json(vocab_size: int) -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 4, trainer=trainer)
    return tok.to_str()


def make_tokenizer(vocab_size: int = 300, with_pad: bool = False) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on a few sentences; EOS only (no pad) unless ``with_pad``."""
    kwargs = {"pad_token": "<|pad|>"} if with_pad else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(vocab_size)),
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        padding_side="left",
        **kwargs,
    )


def gpt2_config(tokenizer, n_layer: int = 2, n_embd: int = 32, **kw) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=kw.pop("n_positions", 64),
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=kw.pop("n_head", 2),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **kw,
    )


def make_policy(tokenizer, seed: int = 0, **kw) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(gpt2_config(tokenizer, **kw))


def make_reward_model(tokenizer, seed: int = 1, num_labels: int = 1, **kw):
    torch.manual_seed(seed)
    cfg = gpt2_config(tokenizer, num_labels=num_labels, **kw)
    cfg.pad_token_id = tokenizer.pad_token_id
    return GPT2ForSequenceClassification(cfg)


def make_trainer(
    tokenizer=None, model=None, *, reward=None, prompts=PROMPTS, peft_config=None, **overrides
):
    """A PPOTrainer on a fresh tiny policy, small batches, no progress bar."""
    from rlhf_pg.lm import PPOConfig, PPOTrainer

    tokenizer = tokenizer if tokenizer is not None else make_tokenizer()
    model = model if model is not None else make_policy(tokenizer)
    settings = dict(batch_size=4, max_new_tokens=6, progress_bar=False, use_cpu=True)
    settings.update(overrides)
    return PPOTrainer(
        PPOConfig(**settings), model, tokenizer, reward=reward, prompts=prompts,
        peft_config=peft_config,
    )  # fmt: skip


def unpadded_logprobs(model, prompt_ids, response_ids, temperature: float):
    """Log-probs of the response tokens from a plain forward pass with no padding at all."""
    ids = torch.cat([prompt_ids, response_ids])[None]
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, response_ids[:, None]).squeeze(-1)
