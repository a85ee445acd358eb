"""What both SFT paths share: the tokenizer, the model, and the saved folder (weights,
tokenizer, ``sft_metrics.json``, tracker logs and a model card), written atomically."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from ..hf.hub import write_model_card
from ..hf.models import tiny_qwen2
from ..hf.tokens import ensure_pad_token
from ..tasks.chat_arithmetic import chat_tokenizer
from ..tasks.tokenizer import train_tokenizer
from ..utils.cache import atomic_dir
from ..utils.io import atomic_write_json
from .sft_args import SFTArgs, describe_data


def build_tokenizer(cfg: SFTArgs, texts: list[str]):
    """A tokenizer from a path (hub name or folder), else a byte-level BPE trained on ``texts``."""
    from transformers import AutoTokenizer

    path = cfg.tokenizer_name_or_path or cfg.model_name_or_path
    if path is not None:
        return AutoTokenizer.from_pretrained(path, padding_side="left")
    if cfg.task == "chat_arithmetic":  # ChatML, trained on the task's phrasings
        return chat_tokenizer(cfg.vocab_size)
    return train_tokenizer(texts, cfg.vocab_size, split_digits=cfg.task == "arithmetic")


def build_model(cfg: SFTArgs, tokenizer):
    """A pretrained causal LM from a path, else a fresh GPT-2 or Qwen2 sized by the config."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    if cfg.model_name_or_path is not None:
        model = AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path)
    elif cfg.model_type == "qwen2":
        model = tiny_qwen2(
            tokenizer,
            hidden_size=cfg.n_embd,
            num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head,
            num_key_value_heads=cfg.n_head // 2 if cfg.n_head % 2 == 0 else cfg.n_head,
            max_position_embeddings=cfg.n_positions,
            seed=cfg.seed,
        )
    else:
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=cfg.n_positions,
            n_embd=cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            # A model built from a config defaults to eager attention, ~10x slower on CPU
            # than SDPA once a padding mask is passed; from_pretrained picks SDPA itself.
            attn_implementation="sdpa",
        )
        model = GPT2LMHeadModel(config)
    ensure_pad_token(tokenizer, model)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_sft_model(
    cfg: SFTArgs,
    out: Path,
    model,
    tokenizer,
    metrics: dict,
    logs: Path | None,
    state_dict: dict | None = None,
) -> None:
    """The model folder, atomically: weights, tokenizer, metrics, tracker logs, model card.
    ``state_dict``: the full weights when ``model``'s own are shards (ZeRO-3, FSDP2)."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "sft_metrics.json", metrics)
        if logs is not None and logs.is_dir() and any(logs.iterdir()):
            shutil.copytree(logs, tmp / "logs")
        write_model_card(
            tmp,
            title=f"SFT model ({cfg.task})",
            stage="sft",
            base_model=cfg.model_name_or_path,
            datasets=describe_data(cfg),
            config=dataclasses.asdict(cfg),
            metrics={k: v for k, v in metrics.items() if k != "history"},
        )
