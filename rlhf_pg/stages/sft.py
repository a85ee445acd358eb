"""Supervised fine-tuning: a causal LM trained on a corpus, the starting point of RLHF.

``train_sft(cfg)`` trains a causal LM and saves it with ``save_pretrained`` (tokenizer,
``sft_metrics.json`` and a model card ``README.md`` beside it). With ``output_dir`` unset the
result goes to the cache under a hash of the config, and a later call with the same config
returns the cached folder without training. Two paths:

- a dataset (``task: dataset``) goes through TRL's ``SFTTrainer``, which reads the formats
  users bring: a text column, conversations (``messages``, through the tokenizer's chat
  template) and prompt/completion pairs (loss on the completion only by default,
  ``completion_only_loss``); ``packing`` and ``assistant_only_loss`` pass through;
- the generated corpora of the offline tasks (``sentiment``, ``arithmetic``) go through our
  own short accelerate loop (:func:`_train_loop`). Why: the corpus is a list of short plain
  texts made here, so SFTTrainer's format detection, dataset preprocessing pass and Trainer
  start-up would add seconds to the demo's budget and nothing else, and the loop is 30
  readable lines whose schedule the demo's published figures were measured with.

Both paths read the same knobs under TRL's ``SFTConfig`` names (``learning_rate``,
``lr_scheduler_type``, ``warmup_steps``, ``gradient_accumulation_steps``, ``max_length``,
``gradient_checkpointing``, ``report_to``, ...; ``per_device_train_batch_size`` and
``dataset_text_field`` are accepted for ``batch_size`` / ``text_column``).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from ..hf.hub import write_model_card
from ..hf.tokens import ensure_pad_token
from ..lm.config import check_report_to, normalize_report_to
from ..lm.tracking import tracker_names
from ..tasks.arithmetic import build_arithmetic_corpus
from ..tasks.reviews import build_corpus
from ..tasks.tokenizer import train_tokenizer
from ..utils.cache import atomic_dir, config_hash, default_cache_root, is_complete
from ..utils.config import (
    ConfigError,
    TrlName,
    check_types,
    require,
    require_lr_scheduler,
    with_aliases,
)
from ..utils.io import atomic_write_json
from ..utils.run_folder import check_process_group, ensure_writable_dir

# Fields that choose where or how a run happens, not what it produces.
_NOT_IN_KEY = (
    "output_dir",
    "cache_dir",
    "reuse_cache",
    "num_threads",
    "log_every",
    "progress",
    "report_to",
)
# Our loop's schedule: linear warm-up, then cosine decay to 10% of the learning rate.
OUR_SCHEDULE = "cosine_with_min_lr"
MIN_LR_RATE = 0.1
# SFTTrainer-only knobs, and the values that leave them off (our loop has no such thing).
DATASET_ONLY = {"packing": False, "completion_only_loss": None, "assistant_only_loss": False}


def mixed_precision_flag(kind: str):
    """TRL's ``bf16`` / ``fp16`` booleans -> our ``mixed_precision``."""

    def convert(value: Any, given: dict[str, Any]) -> str:
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return kind if value else "no"

    return convert


@with_aliases
@dataclass
class SFTArgs:
    """Hyperparameters of one SFT run (recipe YAML keys and CLI flags).

    ``max_steps`` counts optimizer steps, as :attr:`rlhf_pg.lm.PPOConfig.max_steps` does
    (``num_train_epochs``, when set, replaces it); the old name ``num_steps`` still works,
    with a notice. TRL's ``SFTConfig`` names are accepted (``TRL_NAMES``).
    """

    ALIASES: ClassVar[dict[str, str]] = {"num_steps": "max_steps"}
    TRL_NAMES: ClassVar[dict[str, TrlName]] = {
        "per_device_train_batch_size": TrlName("batch_size", note="same meaning"),
        "dataset_text_field": TrlName("text_column", note="same meaning"),
        "dataset_train_split": TrlName("dataset_split", note="same meaning"),
        "logging_steps": TrlName("log_every", note="same meaning"),
        "bf16": TrlName("mixed_precision", mixed_precision_flag("bf16"), note="true -> bf16"),
        "fp16": TrlName("mixed_precision", mixed_precision_flag("fp16"), note="true -> fp16"),
        "activation_checkpointing": TrlName("gradient_checkpointing", note="same meaning"),
    }

    task: Literal["sentiment", "arithmetic", "dataset"] = field(
        default="sentiment",
        metadata={
            "help": "what to train on: the generated reviews, addition problems, or a dataset"
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "model to start from (folder or hub name); unset: a fresh GPT-2 sized by n_layer/n_head/n_embd"
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "tokenizer; unset: the model's, or a byte-level BPE trained on the data"},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "task dataset: hub name, or local folder / json / jsonl / parquet file"},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "task dataset: the hub dataset's configuration (subset)"}
    )
    dataset_split: str = field(
        default="train",
        metadata={"help": "task dataset: split to train on (TRL: dataset_train_split)"},
    )
    text_column: str = field(
        default="text", metadata={"help": "task dataset: the text column (TRL: dataset_text_field)"}
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "task dataset: use at most this many rows"}
    )
    corpus_size: int = field(
        default=20000, metadata={"help": "generated tasks: texts in the corpus"}
    )
    corpus_seed: int = field(default=0, metadata={"help": "generated tasks: seed of the corpus"})
    error_rate: float = field(
        default=0.3, metadata={"help": "arithmetic: share of wrong answers in the SFT corpus"}
    )
    max_operand: int = field(default=49, metadata={"help": "arithmetic: largest operand"})
    held_out_fraction: float = field(
        default=0.2, metadata={"help": "arithmetic: share of problems kept out of training"}
    )
    vocab_size: int = field(
        default=1024, metadata={"help": "size of the BPE trained when no tokenizer is given"}
    )
    n_layer: int = field(default=4, metadata={"help": "fresh GPT-2: layers"})
    n_head: int = field(default=4, metadata={"help": "fresh GPT-2: attention heads"})
    n_embd: int = field(default=128, metadata={"help": "fresh GPT-2: width"})
    n_positions: int = field(default=128, metadata={"help": "fresh GPT-2: context length"})
    max_length: int = field(default=64, metadata={"help": "longest training sequence in tokens"})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    lr_scheduler_type: str = field(
        default=OUR_SCHEDULE,
        metadata={
            "help": "learning-rate schedule: cosine_with_min_lr (down to a tenth) or any transformers schedule name"
        },
    )
    warmup_steps: int = field(default=50, metadata={"help": "linear warm-up steps"})
    max_steps: int = field(
        default=400, metadata={"help": "optimizer steps (num_train_epochs, when set, replaces it)"}
    )
    num_train_epochs: float | None = field(
        default=None, metadata={"help": "train this many passes over the data instead of max_steps"}
    )
    batch_size: int = field(
        default=32,
        metadata={
            "help": "sequences per process per micro-batch (TRL: per_device_train_batch_size)"
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "micro-batches per optimizer step"}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip"})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in backward (less memory, slower)"}
    )
    packing: bool = field(
        default=False,
        metadata={"help": "task dataset: pack sequences into max_length rows (SFTTrainer)"},
    )
    completion_only_loss: bool | None = field(
        default=None,
        metadata={
            "help": "task dataset, prompt/completion pairs: loss on the completion only (unset: yes)"
        },
    )
    assistant_only_loss: bool = field(
        default=False,
        metadata={"help": "task dataset, conversations: loss on the assistant's turns only"},
    )
    eval_fraction: float = field(
        default=0.02, metadata={"help": "share of the data held out for the loss before / after"}
    )
    seed: int = field(default=0, metadata={"help": "random seed"})
    output_dir: str | None = field(
        default=None,
        metadata={"help": "where the model is saved; unset: <cache_dir>/sft-<config hash>"},
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "cache root; unset: $RLHF_PG_CACHE or ~/.cache/rlhf-pg"}
    )
    reuse_cache: bool = field(
        default=True,
        metadata={"help": "return a finished model of the same config instead of training again"},
    )
    use_cpu: bool = field(
        default=False, metadata={"help": "run on the CPU even when a GPU is present"}
    )
    mixed_precision: Literal["no", "bf16", "fp16"] | None = field(
        default=None,
        metadata={"help": "no, bf16 or fp16 (TRL: bf16 / fp16 true); unset: the launcher's"},
    )
    num_threads: int = field(default=0, metadata={"help": "torch threads; 0 keeps torch's default"})
    log_every: int = field(
        default=50, metadata={"help": "log the loss every N steps (TRL: logging_steps)"}
    )
    report_to: str | list[str] = field(
        default_factory=list,
        metadata={"help": "trackers: tensorboard, wandb, trackio, all or none (several allowed)"},
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        check_types(self)
        self.report_to = normalize_report_to(self.report_to)
        check_report_to(self.report_to)
        if self.task != "dataset":
            for name, off in DATASET_ONLY.items():
                require(
                    getattr(self, name) == off,
                    self,
                    name,
                    "applies to task 'dataset' (TRL's SFTTrainer), not to the generated corpus",
                )
        require(
            self.num_train_epochs is None or self.num_train_epochs > 0,
            self,
            "num_train_epochs",
            "must be > 0 (or unset: max_steps)",
        )
        require(self.warmup_steps >= 0, self, "warmup_steps", "must be >= 0")
        require_lr_scheduler(self)
        require(self.log_every >= 1, self, "log_every", "must be >= 1")
        if self.task == "dataset":
            require(
                self.dataset_name is not None,
                self,
                "dataset_name",
                "must be set for task 'dataset'",
            )
        for name in (
            "max_steps",
            "batch_size",
            "gradient_accumulation_steps",
            "corpus_size",
            "n_layer",
            "n_head",
            "n_embd",
        ):
            require(getattr(self, name) >= 1, self, name, "must be >= 1")
        require(self.max_length >= 2, self, "max_length", "must be >= 2")
        require(self.learning_rate > 0, self, "learning_rate", "must be > 0")
        require(0.0 <= self.error_rate <= 1.0, self, "error_rate", "must be in [0, 1]")
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


def build_texts(cfg: SFTArgs) -> list[str]:
    """The generated SFT corpus of an offline task (``sentiment`` or ``arithmetic``)."""
    if cfg.task == "sentiment":
        return build_corpus(cfg.corpus_size, seed=cfg.corpus_seed)
    return build_arithmetic_corpus(
        cfg.corpus_size, cfg.error_rate, cfg.max_operand, cfg.held_out_fraction, cfg.corpus_seed
    )


def describe_data(cfg: SFTArgs) -> list[str]:
    """What the model was trained on, for its model card."""
    if cfg.task == "dataset":
        return [cfg.dataset_name]
    what = "movie reviews" if cfg.task == "sentiment" else "addition problems"
    return [f"generated {what} ({cfg.corpus_size} texts, corpus_seed {cfg.corpus_seed})"]


def sft_dataset_format(dataset, text_column: str) -> str:
    """Which of SFTTrainer's formats ``dataset`` has: ``prompt-completion`` (``prompt`` and
    ``completion`` columns), ``messages`` (conversations) or ``text`` (``text_column``);
    anything else is one line naming the columns it has."""
    columns = dataset.column_names
    if "prompt" in columns and "completion" in columns:
        return "prompt-completion"
    if "messages" in columns:
        return "messages"
    if text_column in columns:
        return "text"
    raise ConfigError(
        f"SFT dataset: no column {text_column!r} (text_column), 'messages' (conversations) or "
        f"'prompt' + 'completion'; it has {columns}"
    )


def load_sft_dataset(cfg: SFTArgs):
    """The user's dataset (at most ``max_samples`` rows) and its format, checked."""
    from ..tasks.datasets import load_any_dataset

    dataset = load_any_dataset(cfg.dataset_name, cfg.dataset_split, cfg.dataset_config)
    if cfg.max_samples is not None:
        dataset = dataset.select(range(min(cfg.max_samples, len(dataset))))
    return dataset, sft_dataset_format(dataset, cfg.text_column)


def _flat_texts(dataset, fmt: str, text_column: str) -> list[str]:
    """Every string of a dataset (to train a tokenizer on when none is given)."""
    if fmt == "text":
        return [str(t) for t in dataset[text_column]]
    if fmt == "messages":
        return [m["content"] for conv in dataset["messages"] for m in conv]
    texts = []
    for column in ("prompt", "completion"):
        for value in dataset[column]:
            texts += [m["content"] for m in value] if isinstance(value, list) else [value]
    return texts


def _conversational(dataset, fmt: str) -> bool:
    from trl.data_utils import is_conversational

    return fmt == "messages" or is_conversational(dataset[0])


def build_tokenizer(cfg: SFTArgs, texts: list[str]):
    """A tokenizer from a path (hub name or folder), else a byte-level BPE trained on ``texts``."""
    from transformers import AutoTokenizer

    path = cfg.tokenizer_name_or_path or cfg.model_name_or_path
    if path is not None:
        return AutoTokenizer.from_pretrained(path, padding_side="left")
    return train_tokenizer(texts, cfg.vocab_size, split_digits=cfg.task == "arithmetic")


def build_model(cfg: SFTArgs, tokenizer):
    """A pretrained causal LM from a path, else a fresh GPT-2 sized by the config."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    if cfg.model_name_or_path is not None:
        model = AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path)
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


def _lr_lambda(cfg: SFTArgs, total_steps: int):
    def f(step: int) -> float:  # linear warm-up, then cosine decay to MIN_LR_RATE
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return MIN_LR_RATE + (1 - MIN_LR_RATE) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def make_schedule(cfg: SFTArgs, optimizer, total_steps: int):
    """Our loop's schedule: ``cosine_with_min_lr`` is the one the demo's figures were measured
    with (its warm-up counts from step 1); any other name is transformers' schedule."""
    if cfg.lr_scheduler_type == OUR_SCHEDULE:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, total_steps))
    from transformers import get_scheduler

    return get_scheduler(
        cfg.lr_scheduler_type,
        optimizer,
        num_warmup_steps=cfg.warmup_steps,
        num_training_steps=total_steps,
    )


def total_steps(cfg: SFTArgs, n_train: int, num_processes: int = 1) -> int:
    """Optimizer steps: ``max_steps``, or ``num_train_epochs`` passes over ``n_train`` rows."""
    if cfg.num_train_epochs is None:
        return cfg.max_steps
    per_step = cfg.batch_size * cfg.gradient_accumulation_steps * num_processes
    return max(1, math.ceil(cfg.num_train_epochs * n_train / per_step))


def _train_loop(
    cfg: SFTArgs, accelerator, model, loader, optimizer, scheduler, steps: int
) -> list[dict]:
    """``steps`` optimizer steps of ``gradient_accumulation_steps`` micro-batches each
    (cycling over the loader); returns the logged rows (also sent to the trackers)."""
    from tqdm.auto import tqdm

    model.train()
    history, batches = [], iter(loader)
    bar = tqdm(range(steps), desc="SFT", disable=not (cfg.progress and accelerator.is_main_process))
    for step in bar:
        # 1. gradients of the mean loss over the step's micro-batches
        for _ in range(cfg.gradient_accumulation_steps):
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            loss = model(**batch).loss
            accelerator.backward(loss / cfg.gradient_accumulation_steps)
        # 2. clip, step, schedule
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        # 3. log
        if step % cfg.log_every == 0 or step == steps - 1:
            row = {
                "step": step,
                "loss": loss.item(),
                "grad_norm": None if grad_norm is None else float(grad_norm),
                "lr": scheduler.get_last_lr()[0],
            }
            history.append(row)
            if accelerator.trackers:
                accelerator.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
    return history


def _save(cfg: SFTArgs, out: Path, model, tokenizer, metrics: dict, logs: Path | None) -> None:
    """The model folder, atomically: weights, tokenizer, metrics, tracker logs, model card."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
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


def train_sft(cfg: SFTArgs) -> Path:
    """Train (or reuse from the cache) an SFT model; returns its ``save_pretrained`` folder."""
    out = sft_output_dir(cfg)
    if cfg.reuse_cache and is_complete(out):
        return out
    tracker_names(cfg.report_to)  # a tracker that is not installed: one line, now
    ensure_writable_dir(out.parent, "the folder above output_dir")  # before any work
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    if cfg.task == "dataset":
        return _train_with_sft_trainer(cfg, out)
    return _train_generated_corpus(cfg, out)


def _train_generated_corpus(cfg: SFTArgs, out: Path) -> Path:
    """Our loop on the offline task's generated corpus (see the module docstring for why)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    scratch = tempfile.TemporaryDirectory(prefix="rlhf-pg-sft-")  # tracker logs until saved
    trackers = tracker_names(cfg.report_to)
    accelerator = Accelerator(
        cpu=cfg.use_cpu,
        mixed_precision=cfg.mixed_precision,
        log_with=trackers or None,
        project_dir=scratch.name,
    )
    check_process_group(accelerator.num_processes, cpu_flag="--use_cpu true")
    set_seed(cfg.seed)

    texts = build_texts(cfg)
    tokenizer = build_tokenizer(cfg, texts)
    model = build_model(cfg, tokenizer)
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_enable()  # transformers 5: the new name
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
    steps = total_steps(cfg, len(train_rows), accelerator.num_processes)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    scheduler = make_schedule(cfg, optimizer, steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    if trackers:
        accelerator.init_trackers("sft", config={k: str(v) for k, v in vars(cfg).items()})

    start = time.perf_counter()
    history = _train_loop(cfg, accelerator, model, loader, optimizer, scheduler, steps)
    train_seconds = time.perf_counter() - start
    for tracker in accelerator.trackers:  # not end_training(): it ends the process group too
        tracker.finish()

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
        _save(cfg, out, unwrapped, tokenizer, metrics, Path(scratch.name))
    accelerator.wait_for_everyone()
    scratch.cleanup()
    return out


def sft_config(cfg: SFTArgs, output_dir: str):
    """TRL's ``SFTConfig`` with the user's knobs. Where TRL's defaults would slow a small
    model on a CPU (bf16, gradient checkpointing, pinned memory) ours are given explicitly;
    nothing is saved by the Trainer (we save the folder atomically ourselves)."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=output_dir,
        max_steps=cfg.max_steps if cfg.num_train_epochs is None else -1,
        num_train_epochs=cfg.num_train_epochs or 1.0,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler_type,
        lr_scheduler_kwargs={"min_lr_rate": MIN_LR_RATE}
        if cfg.lr_scheduler_type == OUR_SCHEDULE
        else None,
        warmup_steps=cfg.warmup_steps,
        max_grad_norm=cfg.max_grad_norm,
        max_length=cfg.max_length,
        dataset_text_field=cfg.text_column,
        packing=cfg.packing,
        completion_only_loss=cfg.completion_only_loss,
        assistant_only_loss=cfg.assistant_only_loss,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5's name
        bf16=cfg.mixed_precision == "bf16",
        fp16=cfg.mixed_precision == "fp16",
        use_cpu=cfg.use_cpu,
        seed=cfg.seed,
        report_to=cfg.report_to or "none",
        logging_steps=cfg.log_every,
        logging_first_step=True,  # as our loop: the first step's loss is always in history
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=not cfg.progress,
        dataloader_pin_memory=False,
    )


def trainer_history(log_history: list[dict]) -> list[dict]:
    """A Trainer's training-loss rows under our loop's names (step, loss, grad_norm, lr)."""
    return [
        {
            "step": r["step"],
            "loss": r["loss"],
            "grad_norm": r.get("grad_norm"),
            "lr": r.get("learning_rate"),
        }
        for r in log_history
        if "loss" in r
    ]


def _train_with_sft_trainer(cfg: SFTArgs, out: Path) -> Path:
    """A user's dataset through TRL's SFTTrainer (text, conversations or prompt/completion)."""
    from accelerate import PartialState
    from trl import SFTTrainer

    check_process_group(PartialState(cpu=cfg.use_cpu).num_processes, cpu_flag="--use_cpu true")
    dataset, fmt = load_sft_dataset(cfg)
    tokenizer = build_tokenizer(cfg, _flat_texts(dataset, fmt, cfg.text_column))
    if _conversational(dataset, fmt) and not tokenizer.chat_template:
        raise ConfigError(
            f"SFT dataset {cfg.dataset_name!r} holds conversations but the tokenizer "
            f"({cfg.tokenizer_name_or_path or cfg.model_name_or_path or 'trained here'}) has no "
            "chat template; give tokenizer_name_or_path of one that has"
        )
    if len(dataset) < 2:
        raise ConfigError(f"SFT dataset {cfg.dataset_name!r} has {len(dataset)} row(s); need 2+")
    split = dataset.train_test_split(test_size=cfg.eval_fraction, seed=cfg.seed)
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    model = build_model(cfg, tokenizer)
    scratch = tempfile.TemporaryDirectory(prefix="rlhf-pg-sft-")  # Trainer wants an output_dir
    trainer = SFTTrainer(
        model=model,
        args=sft_config(cfg, scratch.name),
        train_dataset=split["train"],
        eval_dataset=split["test"],
        processing_class=tokenizer,
    )
    loss_before = trainer.evaluate()["eval_loss"]
    start = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - start
    loss_after = trainer.evaluate()["eval_loss"]
    metrics = {
        "eval_loss_before": loss_before,
        "eval_loss_after": loss_after,
        "train_loss": result.training_loss,
        "train_seconds": train_seconds,
        "num_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "num_processes": trainer.accelerator.num_processes,
        "dataset_format": fmt,
        "history": trainer_history(trainer.state.log_history),
    }
    if trainer.is_world_process_zero():
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        _save(cfg, out, unwrapped, trainer.processing_class, metrics, Path(scratch.name) / "runs")
    trainer.accelerator.wait_for_everyone()
    scratch.cleanup()
    return out
