"""One optimisation step of :class:`PPOTrainer`: rewards -> advantages -> PPO epochs -> metrics.

Kept apart from the trainer class so the algorithm reads top to bottom.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch
from torch import Tensor

from ..core import explained_variance, masked_var
from . import advantages as adv_lib
from .objective import BATCH_KEYS, aggregation_weight, micro_batch_loss, trim_batch
from .rewards import validate_scores
from .rollout import Rollout


def check_rollout(rollout: Rollout, config) -> None:
    n = len(rollout)
    chunks = config.num_minibatches * config.gradient_accumulation_steps
    if n % chunks:
        raise ValueError(
            f"rollout has {n} rows, not divisible into num_minibatches * "
            f"gradient_accumulation_steps = {chunks} equal parts"
        )
    if config.estimator in ("rloo", "grpo") and rollout.group_size != config.samples_per_prompt:
        raise ValueError(
            f"estimator={config.estimator!r} needs groups of samples_per_prompt="
            f"{config.samples_per_prompt} rows per prompt; the rollout has group_size="
            f"{rollout.group_size}"
        )


def run_step(trainer, rollout: Rollout, scores, extra_metrics: dict) -> dict[str, float]:
    cfg = trainer.config
    acc = trainer.accelerator
    start = time.perf_counter()
    check_rollout(rollout, cfg)
    rollout = rollout.to(trainer.device)
    if rollout.logprobs is None or (cfg.uses_critic and rollout.values is None):
        trainer._evaluate(rollout)
    if scores is None:
        scores, _ = trainer.score(rollout)
    scores = validate_scores(scores, len(rollout), "scores passed to step()").to(trainer.device)

    # per-token KL and the shaped rewards / advantages (core functions only)
    mask = rollout.response_mask
    beta = trainer.kl_coef
    kl = adv_lib.per_token_kl(rollout.logprobs, rollout.ref_logprobs, mask, cfg.kl_estimator)
    kl_seq = kl.sum(dim=1)
    shaped = adv_lib.shape_scores(scores, rollout.has_stop, cfg)
    kl_in_reward = cfg.kl_penalty == "reward"
    returns = None
    if cfg.uses_critic:
        penalty = kl if kl_in_reward else torch.zeros_like(kl)
        rewards = adv_lib.token_rewards(shaped, penalty, mask, beta)
        advantages, returns = adv_lib.ppo_advantages(rewards, rollout.values, mask, cfg)
    else:
        seq_scores = shaped - beta * kl_seq if kl_in_reward else shaped
        seq_adv = adv_lib.sequence_advantages(seq_scores, cfg, acc.gather, acc.process_index)
        advantages = seq_adv[:, None].expand_as(kl).float()

    def valid(x: Tensor | None) -> Tensor | None:  # padding must never reach a gradient
        return None if x is None else torch.where(mask, x, torch.zeros_like(x))

    batch = {
        "query_ids": rollout.query_ids,
        "query_mask": rollout.query_mask,
        "response_ids": rollout.response_ids,
        "response_mask": mask,
        "old_logprobs": valid(rollout.logprobs),
        "ref_logprobs": valid(rollout.ref_logprobs),
        "advantages": valid(advantages),
        "old_values": valid(rollout.values),
        "returns": valid(returns),
    }
    lr = trainer.scheduler.get_last_lr()[0]
    stats = ppo_update(trainer, batch, beta)

    kl_seq_mean = trainer.global_mean(kl_seq)
    trainer.kl_ctl.update(kl_seq_mean, len(rollout) * acc.num_processes)
    trainer.scheduler.step()
    trainer.state.step += 1
    update_seconds = time.perf_counter() - start

    lengths = rollout.response_lengths.float()
    step_seconds = (
        rollout.generate_seconds + rollout.forward_seconds + rollout.reward_seconds + update_seconds
    )
    tokens = float(acc.reduce(lengths.sum(), "sum"))
    completions = len(rollout) * acc.num_processes
    metrics = {
        "score/mean": trainer.global_mean(scores),
        "score/std": math.sqrt(float(masked_var(scores, distributed=True))),
        "score/shaped_mean": trainer.global_mean(shaped),
        "kl/token": trainer.global_mean(kl, mask),
        "kl/seq": kl_seq_mean,
        "kl/coef": beta,
        "response/length": trainer.global_mean(lengths),
        "response/eos_rate": trainer.global_mean(rollout.has_stop.float()),
        "lr": lr,
        "time/generate": rollout.generate_seconds,
        "time/forward": rollout.forward_seconds,
        "time/reward": rollout.reward_seconds,
        "time/update": update_seconds,
        "time/step": step_seconds,
        "throughput/tokens_per_s": tokens / step_seconds,
        "throughput/completions_per_s": completions / step_seconds,
    }
    if rollout.entropy is not None:
        metrics["entropy"] = trainer.global_mean(rollout.entropy, mask)
    if cfg.uses_critic:
        metrics["value/mean"] = trainer.global_mean(rollout.values, mask)
        metrics["value/explained_variance"] = explained_variance(
            gather_valid(acc, rollout.values, mask), gather_valid(acc, returns, mask)
        )
    for name, values in stats.items():
        mean = torch.stack(values).float().mean().to(trainer.device)
        # loss terms are per-process shares of global-minibatch values: they add up
        shared = name.startswith(("loss/", "policy/"))
        metrics[name] = float(acc.reduce(mean, "sum")) if shared else float(mean)
    metrics.update(extra_metrics)
    trainer.log(metrics)
    return metrics


def gather_valid(accelerator, x: Tensor, mask: Tensor) -> Tensor:
    """Valid entries of x from every process, concatenated (uneven sizes allowed)."""
    flat = x[mask].float()
    if accelerator.num_processes == 1:
        return flat
    counts = accelerator.gather(torch.tensor([flat.numel()], device=flat.device))
    padded = accelerator.gather(accelerator.pad_across_processes(flat, dim=0))
    padded = padded.view(accelerator.num_processes, -1)
    return torch.cat([padded[i, : int(n)] for i, n in enumerate(counts)])


def ppo_update(trainer, batch: dict[str, Tensor], kl_coef: float) -> dict[str, list[Tensor]]:
    """``update_epochs`` passes of ``num_minibatches`` optimizer steps, each over
    ``gradient_accumulation_steps`` micro-batches.

    Each micro-batch loss is scaled by its share of the minibatch's aggregation
    weight over ALL processes, so the summed (and DDP-averaged) gradient equals
    the gradient of the loss aggregated over the global minibatch.
    """
    cfg = trainer.config
    acc = trainer.accelerator
    model = trainer.model
    n = batch["response_mask"].shape[0]
    mb_size = n // cfg.num_minibatches
    micro_size = mb_size // cfg.gradient_accumulation_steps
    stats: dict[str, list[Tensor]] = {"ppo/epochs": []}
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
    model.train()  # dropout is disabled; train mode only switches gradient checkpointing on
    for epoch in range(cfg.update_epochs):
        perm = torch.randperm(n, generator=trainer.perm_generator).to(trainer.device)
        epoch_kl = []
        for m in range(cfg.num_minibatches):
            rows = perm[m * mb_size : (m + 1) * mb_size]
            micro = [
                trim_batch({k: (None if batch[k] is None else batch[k][r]) for k in BATCH_KEYS})
                for r in rows.split(micro_size)
            ]
            weights = [aggregation_weight(b["response_mask"], cfg) for b in micro]
            total = acc.reduce(torch.stack(weights).sum(), "sum")
            shares: dict[str, Tensor] = {}  # this process's part of the global-minibatch stats
            for j, b in enumerate(micro):
                last = j == len(micro) - 1
                share = weights[j] / total
                with contextlib.nullcontext() if last else acc.no_sync(model):
                    loss, st = micro_batch_loss(model, b, cfg, kl_coef)
                    acc.backward(loss * (share * acc.num_processes))
                for key, value in st.items():
                    shares[key] = shares.get(key, 0.0) + value.detach() * share
            for key, value in shares.items():
                stats.setdefault(_metric_name(key), []).append(value)
            epoch_kl.append(acc.reduce(shares["approx_kl"], "sum"))
            grad_norm = acc.clip_grad_norm_(model.parameters(), max_norm)
            stats.setdefault("grad_norm", []).append(torch.as_tensor(grad_norm).detach().cpu())
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
        stats["ppo/epochs"] = [torch.tensor(float(epoch + 1))]
        if cfg.target_kl > 0 and float(torch.stack(epoch_kl).mean()) > cfg.target_kl:
            break
    return {k: [v.detach().float().cpu() for v in vs] for k, vs in stats.items()}


def _metric_name(key: str) -> str:
    return {
        "policy_loss": "loss/policy",
        "value_loss": "loss/value",
        "kl_loss": "loss/kl",
        "clipfrac": "policy/clipfrac",
        "approx_kl": "policy/approx_kl",
    }[key]
