"""Supervised fine-tuning: a causal LM trained on a corpus, the starting point of RLHF.

``train_sft(cfg)`` builds (or loads) the corpus, the tokenizer and a GPT-2 (or, with
``model_type: qwen2``, a Qwen2), trains it with
next-token cross-entropy in a short accelerate loop and saves it with ``save_pretrained``
(tokenizer and ``sft_metrics.json`` beside it). With ``output_dir`` unset the result goes
to the cache under a hash of the config, and a later call with the same config returns
the cached folder without training.

Why our own loop rather than TRL's SFTTrainer: the loop is 30 readable lines, it adds no
dataset-preprocessing pass or Trainer start-up to the demo's 10-minute budget, and its
defaults (fp32, no gradient checkpointing, steps not epochs) are the ones a 1M-parameter
CPU model needs, where SFTTrainer's (bf16, gradient checkpointing) would all be overridden.

Chat tasks (``chat_arithmetic``) go through the same loop: each conversation is rendered by
the tokenizer's chat template (prompt with the generation prompt, then the reply) and EOS
(``<|im_end|>``, the end of the assistant's turn) is appended, which is the template's own
rendering of the whole conversation; the loss covers every token, as for the other tasks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch

from ..hf.models import tiny_qwen2
from ..hf.tokens import ensure_pad_token
from ..tasks import chat_arithmetic
from ..tasks.arithmetic import build_arithmetic_corpus
from ..tasks.reviews import build_corpus
from ..tasks.tokenizer import train_tokenizer
from ..utils.cache import atomic_dir, config_hash, default_cache_root, is_complete
from ..utils.config import check_types, require, with_aliases
from ..utils.io import atomic_write_json
from ..utils.run_folder import check_process_group, ensure_writable_dir

# Fields that choose where or how a run happens, not what it produces.
_NOT_IN_KEY = ("output_dir", "cache_dir", "reuse_cache", "num_threads", "log_every", "progress")


@with_aliases
@dataclass
class SFTArgs:
    """Hyperparameters of one SFT run (recipe YAML keys and CLI flags).

    ``max_steps`` counts optimizer steps, as :attr:`rlhf_pg.lm.PPOConfig.max_steps` does;
    the old name ``num_steps`` still works, with a notice.
    """

    ALIASES: ClassVar[dict[str, str]] = {"num_steps": "max_steps"}

    task: Literal["sentiment", "arithmetic", "chat_arithmetic", "dataset"] = "sentiment"
    model_name_or_path: str | None = None  # None: a fresh model_type from n_layer/n_head/n_embd
    model_type: Literal["gpt2", "qwen2"] = (
        "gpt2"  # qwen2: n_head // 2 key-value heads (n_head if odd)
    )
    tokenizer_name_or_path: str | None = None  # None: model's tokenizer, or a BPE trained here
    dataset_name: str | None = None  # task "dataset": hub name or local folder/file
    dataset_split: str = "train"
    text_column: str = "text"
    max_samples: int | None = None
    corpus_size: int = 20000
    corpus_seed: int = 0
    error_rate: float = 0.3  # arithmetic: share of wrong answers in the SFT corpus
    carry_slip: float = 0.6  # chat_arithmetic: how often the tutor forgets a carry
    max_operand: int = 49
    held_out_fraction: float = 0.2
    vocab_size: int = 1024
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 128
    max_length: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_steps: int = 400
    batch_size: int = 32
    max_grad_norm: float = 1.0
    eval_fraction: float = 0.02
    seed: int = 0
    output_dir: str | None = None  # None: <cache_dir>/sft-<config hash>
    cache_dir: str | None = None  # None: $RLHF_PG_CACHE or ~/.cache/rlhf-pg
    reuse_cache: bool = True
    use_cpu: bool = False
    mixed_precision: Literal["no", "bf16", "fp16"] | None = None  # None: the launcher's
    num_threads: int = 0  # 0 leaves torch's default
    log_every: int = 50
    progress: bool = True

    def __post_init__(self) -> None:
        check_types(self)
        if self.task == "dataset":
            require(
                self.dataset_name is not None,
                self,
                "dataset_name",
                "must be set for task 'dataset'",
            )
        for name in ("max_steps", "batch_size", "corpus_size", "n_layer", "n_head", "n_embd"):
            require(getattr(self, name) >= 1, self, name, "must be >= 1")
        require(self.max_length >= 2, self, "max_length", "must be >= 2")
        require(self.learning_rate > 0, self, "learning_rate", "must be > 0")
        require(0.0 <= self.error_rate <= 1.0, self, "error_rate", "must be in [0, 1]")
        require(0.0 <= self.carry_slip <= 1.0, self, "carry_slip", "must be in [0, 1]")
        require(0.0 < self.eval_fraction < 0.5, self, "eval_fraction", "must be in (0, 0.5)")
        require(
            self.n_embd % self.n_head == 0,
            self,
            "n_embd",
            f"must be a multiple of n_head={self.n_head}",
        )


def sft_output_dir(cfg: SFTArgs) -> Path:
    """Where ``train_sft(cfg)`` writes: ``output_dir``, or the cache folder keyed by the config."""
    if cfg.output_dir is not None:
        return Path(cfg.output_dir)
    root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root()
    return root / f"sft-{config_hash(cfg, exclude=_NOT_IN_KEY)}"


def build_texts(cfg: SFTArgs, tokenizer=None) -> list[str]:
    """The SFT corpus the config names (a chat task renders it with ``tokenizer``'s template)."""
    if cfg.task == "chat_arithmetic":
        rows = chat_arithmetic.sft_rows(
            cfg.corpus_size,
            cfg.carry_slip,
            cfg.error_rate,
            cfg.max_operand,
            cfg.held_out_fraction,
            cfg.corpus_seed,
        )
        return [chat_arithmetic.render_sft_text(tokenizer, row) for row in rows]
    if cfg.task == "sentiment":
        return build_corpus(cfg.corpus_size, seed=cfg.corpus_seed)
    if cfg.task == "arithmetic":
        return build_arithmetic_corpus(
            cfg.corpus_size, cfg.error_rate, cfg.max_operand, cfg.held_out_fraction, cfg.corpus_seed
        )
    from ..tasks.datasets import load_texts

    return load_texts(cfg.dataset_name, cfg.dataset_split, cfg.text_column, cfg.max_samples)


def build_tokenizer(cfg: SFTArgs, texts: list[str]):
    """A tokenizer from a path (hub name or folder), else a byte-level BPE trained on ``texts``."""
    from transformers import AutoTokenizer

    path = cfg.tokenizer_name_or_path or cfg.model_name_or_path
    if path is not None:
        return AutoTokenizer.from_pretrained(path, padding_side="left")
    if cfg.task == "chat_arithmetic":
        return chat_arithmetic.chat_tokenizer(cfg.vocab_size)
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


def encode_texts(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each text followed by EOS (so the model learns to stop), cut to ``max_length``."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [row[: max_length - 1] + [tokenizer.eos_token_id] for row in ids]


def collate_right_padded(rows: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions are masked out of attention and loss (label -100)."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    labels = input_ids.masked_fill(mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


@torch.no_grad()
def mean_loss(model, rows: list[list[int]], pad_id: int, batch_size: int = 64) -> float:
    """Token-weighted mean next-token loss of ``model`` on ``rows``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = {
            k: v.to(device)
            for k, v in collate_right_padded(rows[start : start + batch_size], pad_id).items()
        }
        n = int((batch["labels"][:, 1:] != -100).sum())
        total += float(model(**batch).loss) * n
        count += n
    model.train(was_training)
    return total / max(1, count)


def _lr_lambda(cfg: SFTArgs):
    def f(step: int) -> float:  # linear warm-up, then cosine decay to 10%
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def _train_loop(cfg: SFTArgs, accelerator, model, loader, optimizer, scheduler) -> list[dict]:
    """``cfg.max_steps`` optimizer steps (cycling over the loader); returns the logged rows."""
    from tqdm.auto import tqdm

    model.train()
    history, batches = [], iter(loader)
    bar = tqdm(
        range(cfg.max_steps), desc="SFT", disable=not (cfg.progress and accelerator.is_main_process)
    )
    for step in bar:
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss = model(**batch).loss
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % cfg.log_every == 0 or step == cfg.max_steps - 1:
            row = {
                "step": step,
                "loss": loss.item(),
                "grad_norm": None if grad_norm is None else float(grad_norm),
                "lr": scheduler.get_last_lr()[0],
            }
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
    return history


def train_sft(cfg: SFTArgs) -> Path:
    """Train (or reuse from the cache) an SFT model; returns its ``save_pretrained`` folder."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out = sft_output_dir(cfg)
    if cfg.reuse_cache and is_complete(out):
        return out
    ensure_writable_dir(out.parent, "the folder above output_dir")  # before any work
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    accelerator = Accelerator(cpu=cfg.use_cpu, mixed_precision=cfg.mixed_precision)
    check_process_group(accelerator.num_processes, cpu_flag="--use_cpu true")
    set_seed(cfg.seed)

    if cfg.task == "chat_arithmetic":  # the tokenizer's chat template renders the corpus
        tokenizer = build_tokenizer(cfg, [])
        texts = build_texts(cfg, tokenizer)
    else:
        texts = build_texts(cfg)
        tokenizer = build_tokenizer(cfg, texts)
    model = build_model(cfg, tokenizer)
    rows = encode_texts(tokenizer, texts, cfg.max_length)
    n_eval = max(1, int(len(rows) * cfg.eval_fraction))
    train_rows, eval_rows = rows[n_eval:], rows[:n_eval]
    loss_before = mean_loss(model.to(accelerator.device), eval_rows, tokenizer.pad_token_id)

    loader = torch.utils.data.DataLoader(
        train_rows,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=lambda b: collate_right_padded(b, tokenizer.pad_token_id),
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    start = time.perf_counter()
    history = _train_loop(cfg, accelerator, model, loader, optimizer, scheduler)
    train_seconds = time.perf_counter() - start

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    loss_after = mean_loss(unwrapped, eval_rows, tokenizer.pad_token_id)
    metrics = {
        "eval_loss_before": loss_before,
        "eval_loss_after": loss_after,
        "train_seconds": train_seconds,
        "num_parameters": sum(p.numel() for p in unwrapped.parameters()),
        "num_processes": accelerator.num_processes,
        "history": history,
    }
    if accelerator.is_main_process:
        with atomic_dir(out) as tmp:
            unwrapped.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / "sft_metrics.json", metrics)
    accelerator.wait_for_everyone()
    return out
