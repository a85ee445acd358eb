"""Tiny random-init causal LMs of three families, built from configs, saved with
``save_pretrained`` and loaded back with ``from_pretrained`` (no hub):

- ``gpt2``: byte-level BPE, EOS only (no pad, no chat template), absolute positions;
- ``llama``: a BOS token added to every encoding, a chat template, rotary positions;
- ``qwen2``: no BOS, ``<|im_end|>`` as EOS, a ChatML template, rotary positions.

Tokenizers are trained on the fly on a few sentences. Use :func:`load_family`. The ChatML
template and the Qwen2 builder are the library's (``rlhf_pg.tasks.tokenizer.CHATML_TEMPLATE``,
``rlhf_pg.hf.models.tiny_qwen2``), which the chat-arithmetic task uses too.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from rlhf_pg.hf.models import tiny_qwen2
from rlhf_pg.tasks.tokenizer import CHATML_TEMPLATE as QWEN_TEMPLATE

FAMILIES = ("gpt2", "llama", "qwen2")
SENTENCES = [
    "the movie was great and the actors were wonderful",
    "the film was terrible and the plot was boring",
    "i loved the music and the story",
    "what is twelve plus seven",
    "twelve plus seven is nineteen",
]
LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)
SPECIALS = {
    "gpt2": ["<|endoftext|>"],
    "llama": ["<s>", "</s>", "<unk>"],
    "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
}


@functools.cache
def _bpe_json(family: str) -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIALS[family],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 4, trainer=trainer)
    if family == "llama":  # every encoding starts with BOS, as Llama tokenizers do
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
        )
    return tok.to_str()


def make_tokenizer(family: str) -> PreTrainedTokenizerFast:
    backend = Tokenizer.from_str(_bpe_json(family))
    if family == "gpt2":
        return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    if family == "llama":
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
            chat_template=LLAMA_TEMPLATE, padding_side="left",
        )  # fmt: skip
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=QWEN_TEMPLATE, padding_side="left",
    )  # fmt: skip


def make_model(family: str, tokenizer, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    common = {"vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id}
    if family == "gpt2":
        cfg = GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=2, **common, **overrides)
        return GPT2LMHeadModel(cfg)
    small = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, **common,
    )  # fmt: skip
    if family == "llama":
        return LlamaForCausalLM(
            LlamaConfig(bos_token_id=tokenizer.bos_token_id, **small, **overrides)
        )
    return tiny_qwen2(tokenizer, seed=seed, **overrides)  # the sizes of ``small``


def save_family(family: str, path: Path, seed: int = 0, **overrides) -> Path:
    tok = make_tokenizer(family)
    make_model(family, tok, seed, **overrides).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def load_family(family: str, tmp_path: Path, **overrides):
    """``(model, tokenizer, path)`` of a family saved to ``tmp_path / family`` and loaded back."""
    path = save_family(family, Path(tmp_path) / family, **overrides)
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    return AutoModelForCausalLM.from_pretrained(path), tokenizer, path
