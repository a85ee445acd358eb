"""The optimisation part of a PPO step: epochs x minibatches x micro-batches.

Pure in its inputs: the model, optimizer and accelerator (the process group) it updates,
the rollout's tensors, the config, the KL coefficient and the generator that shuffles.
Nothing here reads or writes trainer state; the caller owns the KL controller, the
learning-rate schedule and the logging.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core import finite_checks
from .config import PPOConfig
from .engines import grad_norm_value
from .objective import (
    BATCH_KEYS,
    aggregation_weight,
    loss_terms,
    padding_bounds,
    total_loss,
    trim_batch,
)

TERM_METRICS = {
    "policy": "loss/policy",
    "value": "loss/value",
    "entropy": "loss/entropy",
    "kl": "loss/kl",
}


def ppo_update(
    model,
    optimizer: torch.optim.Optimizer,
    accelerator,
    batch: dict[str, Tensor | None],
    config: PPOConfig,
    kl_coef: float,
    generator: torch.Generator,
) -> dict[str, list[Tensor]]:
    """``update_epochs`` passes of ``num_minibatches`` optimizer steps over ``batch``.

    Returns the per-minibatch statistics (this process's share of each global value,
    see :func:`minibatch_step`) under their metric names, plus ``ppo/epochs`` (epochs run:
    fewer than ``update_epochs`` when ``target_kl`` stopped the loop).

    Host syncs do not grow with micro-batches: the padding bounds and the NaN/inf scan of the
    batch before the loop, the scan of the statistics after it (the core's per-call scans
    are off inside), one copy of the row order per epoch, and with ``target_kl`` one check
    per epoch.
    """
    n = batch["response_mask"].shape[0]
    check_batch_finite(batch)
    # seq-mean-token-sum divides by one constant for the whole step on every process:
    # max_new_tokens, or the longest valid response anywhere if given longer ones
    longest = batch["response_mask"].sum(dim=1).max()
    pad_width = max(config.max_new_tokens, int(accelerator.reduce(longest, "max")))
    bounds = padding_bounds(batch["query_mask"], batch["response_mask"])
    mb_size = n // config.num_minibatches
    stats: dict[str, list[Tensor]] = {}
    model.train()  # dropout is disabled; train mode only switches gradient checkpointing on
    epochs_run = 0
    with finite_checks(False):
        for _ in range(config.update_epochs):
            perm = torch.randperm(n, generator=generator)
            on_device = perm.to(batch["response_mask"].device)  # one copy per epoch
            epoch_kl = []
            for m in range(config.num_minibatches):
                part = slice(m * mb_size, (m + 1) * mb_size)
                rows = (perm[part], on_device[part])
                shares = minibatch_step(
                    model, optimizer, accelerator, batch, rows, config, kl_coef, pad_width, bounds
                )
                for key, value in shares.items():
                    stats.setdefault(key, []).append(value.detach().float())
                epoch_kl.append(accelerator.reduce(shares["policy/approx_kl"], "sum"))
            epochs_run += 1
            # one host sync per epoch, only when early stopping is on
            if config.target_kl > 0 and float(torch.stack(epoch_kl).mean()) > config.target_kl:
                break
    check_stats_finite(stats)
    stats["ppo/epochs"] = [torch.tensor(float(epochs_run))]
    return stats


def check_batch_finite(batch: dict[str, Tensor | None]) -> None:
    """One scan of every float tensor of the update batch (padding is zeroed already)."""
    floats = {k: v for k, v in batch.items() if v is not None and v.is_floating_point()}
    finite = torch.stack([torch.isfinite(v).all() for v in floats.values()]).tolist()
    for name, ok in zip(floats, finite):
        if not ok:
            raise ValueError(f"{name} of the update batch contains NaN or inf at a valid token")


def check_stats_finite(stats: dict[str, list[Tensor]]) -> None:
    """What the skipped per-call scans would have caught: a loss term or gradient norm
    that became NaN/inf during the update."""
    finite = torch.stack([torch.isfinite(torch.stack(v)).all() for v in stats.values()]).tolist()
    for name, ok in zip(stats, finite):
        if not ok:
            raise FloatingPointError(
                f"{name} became NaN/inf during the update; lower learning_rate or check the rewards"
            )


def minibatch_step(
    model,
    optimizer,
    accelerator,
    batch,
    rows: tuple[Tensor, Tensor],
    config: PPOConfig,
    kl_coef: float,
    pad_width: int,
    bounds: tuple[list[int], list[int]],
) -> dict[str, Tensor]:
    """One optimizer step on the minibatch ``rows``, over ``gradient_accumulation_steps``
    micro-batches.

    Each micro-batch loss is scaled by its share of the minibatch's aggregation weight over
    ALL processes, so the summed (and DDP-averaged) gradient equals the gradient of the loss
    aggregated over the global minibatch. Losses are aggregated over responses padded to
    ``pad_width``, and trimmed to the ``bounds`` of :func:`padding_bounds`. ``rows`` holds
    the minibatch's row indices twice, on the host and on the batch's device. Returns this
    process's share of each statistic.

    Accumulation and clipping go through accelerate, so every engine does its own part:
    ``accumulate`` skips the gradient all-reduce before the last micro-batch under DDP and
    FSDP2 (not under ZeRO-2/3, which reduce their partitions), DeepSpeed's engine steps and
    clips (``gradient_clipping`` = ``max_grad_norm``) inside the last ``backward``, and then
    ``clip_grad_norm_`` reports its norm while ``optimizer.step`` does nothing.
    """
    host_rows, device_rows = rows
    micro_size = len(host_rows) // config.gradient_accumulation_steps
    micro = []
    for idx, r in zip(host_rows.split(micro_size), device_rows.split(micro_size)):
        idx = idx.tolist()
        start, width = min(bounds[0][i] for i in idx), max(bounds[1][i] for i in idx)
        rows_of = {k: (None if batch[k] is None else batch[k][r]) for k in BATCH_KEYS}
        micro.append(trim_batch(rows_of, start, width))
    weights = [aggregation_weight(b["response_mask"], config) for b in micro]
    total = accelerator.reduce(torch.stack(weights).sum(), "sum")
    with_kl = config.kl_penalty == "loss" and kl_coef > 0
    shares: dict[str, Tensor] = {}
    # backward() divides by the accumulation steps (accelerate, or DeepSpeed's engine): undo
    scale = accelerator.num_processes * accelerator.gradient_accumulation_steps
    for j, b in enumerate(micro):
        share = weights[j] / total
        with accelerator.accumulate(model):  # syncs gradients on the last micro-batch only
            terms, ppo_stats = loss_terms(model, b, config, with_kl=with_kl, pad_width=pad_width)
            loss = total_loss(terms, config, kl_coef)
            accelerator.backward(loss * (share * scale))
        named = {TERM_METRICS[k]: v for k, v in terms._asdict().items() if v is not None}
        for key, value in {**named, **ppo_stats}.items():
            shares[key] = shares.get(key, 0.0) + value.detach() * share
    if not accelerator.sync_gradients:  # accelerate's micro-batch counter is off our loop
        raise RuntimeError(
            f"the last of {len(micro)} micro-batches did not synchronise gradients: the "
            f"accelerator accumulates over {accelerator.gradient_accumulation_steps} steps and "
            "was used for accumulation elsewhere"
        )
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
    shares["grad_norm"] = grad_norm_value(accelerator.clip_grad_norm_(model.parameters(), max_norm))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return shares


def optimizer_and_schedule(policy, cfg: PPOConfig):
    """AdamW over the trainable parameters and a constant or linear-decay LR schedule
    (stepped once per PPO step; not given to ``accelerate.prepare``, which would step it
    once per process)."""
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.learning_rate, eps=cfg.adam_eps, weight_decay=cfg.weight_decay
    )
    decay, total = cfg.lr_schedule == "linear", cfg.max_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: max(0.0, 1.0 - s / total) if decay else 1.0
    )
    return optimizer, schedule
