"""Supervised fine-tuning: a causal LM trained on a corpus, the starting point of RLHF.

``train_sft(cfg)`` trains a causal LM and saves it with ``save_pretrained`` (tokenizer,
``sft_metrics.json`` and a model card ``README.md`` beside it). With ``output_dir`` unset the
result goes to the cache under a hash of the config, and a later call with the same config
returns the cached folder without training. Two paths:

- a dataset (``task: dataset``) goes through TRL's ``SFTTrainer``
  (:mod:`rlhf_pg.stages.sft_datasets`), which reads the formats users bring: a text column,
  conversations (``messages``, through the tokenizer's chat template) and prompt/completion
  pairs (loss on the completion only by default, ``completion_only_loss``); ``packing`` and
  ``assistant_only_loss`` pass through;
- the generated corpora of the offline tasks (``sentiment``, ``arithmetic``,
  ``chat_arithmetic``) go through our own short accelerate loop (:func:`_train_loop`). Why: the corpus is a list of short plain
  texts made here, so SFTTrainer's format detection, dataset preprocessing pass and Trainer
  start-up would add seconds to the demo's budget and nothing else, and the loop is 30
  readable lines whose schedule the demo's published figures were measured with.

The chat task's conversations are rendered by the tokenizer's chat template (the prompt with
the generation prompt, then the reply) and EOS (``<|im_end|>``, the end of the assistant's
turn) is appended, which is the template's own rendering of the conversation; the loss
covers every token, as for the other generated corpora.

Both paths build the tokenizer and model and save the folder the same way
(:mod:`rlhf_pg.stages.sft_build`) and read the same knobs (:class:`SFTArgs`, in
:mod:`rlhf_pg.stages.sft_args`) under TRL's ``SFTConfig`` names (``learning_rate``,
``lr_scheduler_type``, ``warmup_steps``, ``gradient_accumulation_steps``, ``max_length``,
``gradient_checkpointing``, ``report_to``, ...; ``per_device_train_batch_size`` and
``dataset_text_field`` are accepted for ``batch_size`` / ``text_column``).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch

from ..lm.tracking import tracker_names
from ..tasks import chat_arithmetic
from ..tasks.arithmetic import build_arithmetic_corpus
from ..tasks.reviews import build_corpus
from ..utils.cache import is_complete
from ..utils.run_folder import check_process_group, ensure_writable_dir
from .sft_args import MIN_LR_RATE, OUR_SCHEDULE, SFTArgs, sft_output_dir
from .sft_build import build_model, build_tokenizer, save_sft_model
from .sft_datasets import train_with_sft_trainer

__all__ = ["SFTArgs", "sft_output_dir", "train_sft"]


def build_texts(cfg: SFTArgs, tokenizer=None) -> list[str]:
    """The generated SFT corpus of an offline task (``sentiment``, ``arithmetic``, or
    ``chat_arithmetic``, whose conversations ``tokenizer``'s chat template renders)."""
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
    return build_arithmetic_corpus(
        cfg.corpus_size, cfg.error_rate, cfg.max_operand, cfg.held_out_fraction, cfg.corpus_seed
    )


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
        from ..lm.engines import check_hf_trainer_launcher

        check_hf_trainer_launcher("the SFT stage with a dataset", cpu=cfg.use_cpu)
        return train_with_sft_trainer(cfg, out)
    return _train_generated_corpus(cfg, out)


def _train_generated_corpus(cfg: SFTArgs, out: Path) -> Path:
    """Our loop on the offline task's generated corpus (see the module docstring for why)."""
    from accelerate.utils import set_seed

    from ..lm.engines import build_accelerator, configure_engine, engine_of

    scratch = tempfile.TemporaryDirectory(prefix="rlhf-pg-sft-")  # tracker logs until saved
    trackers = tracker_names(cfg.report_to)
    # DeepSpeed / FSDP2 when the launcher asks; a dropped engine is an error, not DDP
    accelerator = build_accelerator(
        cpu=cfg.use_cpu,
        mixed_precision=cfg.mixed_precision,
        log_with=trackers or None,
        project_dir=scratch.name,
    )
    check_process_group(accelerator.num_processes, cpu_flag="--use_cpu true")
    # DeepSpeed clips inside its step: max_grad_norm becomes its gradient_clipping
    configure_engine(
        accelerator,
        micro_batch_size=cfg.batch_size,
        gradient_accumulation_steps=1,
        max_grad_norm=cfg.max_grad_norm,
    )
    set_seed(cfg.seed)

    if cfg.task == "chat_arithmetic":  # the tokenizer's chat template renders the corpus
        tokenizer = build_tokenizer(cfg, [])
        texts = build_texts(cfg, tokenizer)
    else:
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
    # the schedule stays outside prepare(): accelerate would step it once per process on every
    # call, but `steps` already counts each process's optimizer steps
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if trackers:
        accelerator.init_trackers("sft", config={k: str(v) for k, v in vars(cfg).items()})

    start = time.perf_counter()
    history = _train_loop(cfg, accelerator, model, loader, optimizer, scheduler, steps)
    train_seconds = time.perf_counter() - start
    for tracker in accelerator.trackers:  # not end_training(): it ends the process group too
        tracker.finish()

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    loss_after = mean_loss(unwrapped, eval_rows, tokenizer.pad_token_id)  # every process
    # sharded engines: the full weights, gathered on every process, for the main one to save
    state_dict = accelerator.get_state_dict(model) if engine_of(accelerator) else None
    metrics = {
        "eval_loss_before": loss_before,
        "eval_loss_after": loss_after,
        "train_seconds": train_seconds,
        "num_parameters": sum(getattr(p, "ds_numel", p.numel()) for p in unwrapped.parameters()),
        "num_processes": accelerator.num_processes,
        "history": history,
    }
    if accelerator.is_main_process:
        save_sft_model(
            cfg, out, unwrapped, tokenizer, metrics, Path(scratch.name), state_dict=state_dict
        )
    accelerator.wait_for_everyone()
    scratch.cleanup()
    return out
