"""SFT on a user's dataset through TRL's ``SFTTrainer``, which reads the formats users bring:
a text column, conversations (``messages``, through the tokenizer's chat template) and
prompt/completion pairs (loss on the completion only by default); ``SFTConfig`` gets the
user's knobs (:func:`sft_config`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..utils.config import ConfigError
from ..utils.run_folder import check_process_group
from .sft_args import MIN_LR_RATE, OUR_SCHEDULE, SFTArgs
from .sft_build import build_model, build_tokenizer, save_sft_model


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


def train_with_sft_trainer(cfg: SFTArgs, out: Path) -> Path:
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
    from ..lm.engines import check_engine, engine_of

    check_engine(trainer.accelerator)  # transformers' Trainer got the engine it was asked for
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
        "num_parameters": sum(
            getattr(p, "ds_numel", p.numel()) for p in trainer.model.parameters()
        ),
        "num_processes": trainer.accelerator.num_processes,
        "dataset_format": fmt,
        "history": trainer_history(trainer.state.log_history),
    }
    # sharded engines (ZeRO-3, FSDP2): the full weights, gathered on every process
    acc = trainer.accelerator
    state_dict = acc.get_state_dict(trainer.model_wrapped) if engine_of(acc) else None
    if trainer.is_world_process_zero():
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        save_sft_model(
            cfg, out, unwrapped, trainer.processing_class, metrics, Path(scratch.name) / "runs",
            state_dict=state_dict,
        )  # fmt: skip
    trainer.accelerator.wait_for_everyone()
    scratch.cleanup()
    return out
