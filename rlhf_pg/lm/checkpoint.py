"""Trainer checkpoints for an identical continuation, written atomically.

Layout of ``checkpoint-XXXXXX/``::

    policy/                   save_pretrained directory (model or adapters, value head, tokenizer)
    trainable.safetensors     every trainable parameter, by name (exact resume)
    trainer_state.pt          optimizer, scheduler, KL controller, step, data position
    rng_state_<rank>.pt       each process's torch / python / numpy RNG states
    trainer_config.json       the PPOConfig

The directory is assembled under a temporary name and renamed into place, so
a crash leaves either the previous checkpoint or the complete new one.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from ..utils.io import (
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write_json,
    load_safetensors,
    safe_torch_load,
)
from ..utils.rng import rng_state, set_rng_state


def _trainable(trainer) -> dict[str, torch.Tensor]:
    return {n: p for n, p in trainer.unwrapped_model.named_parameters() if p.requires_grad}


def save_checkpoint(trainer, path: str | Path) -> Path:
    acc = trainer.accelerator
    final = Path(path)
    tmp = final.parent / f".{final.name}.partial"
    acc.wait_for_everyone()
    if acc.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)  # left over from a crash
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    rng = {**rng_state(), "sample_generator": trainer.sample_generator.get_state()}
    atomic_torch_save(rng, tmp / f"rng_state_{acc.process_index}.pt")
    if acc.is_main_process:
        trainer.unwrapped_model.save_pretrained(tmp / "policy", tokenizer=trainer.tokenizer)
        atomic_save_safetensors(_trainable(trainer), tmp / "trainable.safetensors")
        state = {
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "kl_controller": trainer.kl_controller.state_dict(),
            "trainer_state": asdict(trainer.state),
            "perm_generator": trainer.perm_generator.get_state(),
            "num_processes": acc.num_processes,
        }
        atomic_torch_save(state, tmp / "trainer_state.pt")
        atomic_write_json(tmp / "trainer_config.json", trainer.config.to_dict())
    acc.wait_for_everyone()
    if acc.is_main_process:
        old = final.parent / f".{final.name}.old"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            shutil.rmtree(old)
    acc.wait_for_everyone()
    for cb in trainer.callbacks:
        cb.on_save(trainer, final)
    return final


def load_checkpoint(trainer, path: str | Path) -> None:
    """Restore weights, optimizer, scheduler, KL controller, step, data position and RNG."""
    path = Path(path)
    acc = trainer.accelerator
    if not (path / "trainer_state.pt").exists():
        raise FileNotFoundError(f"{path} is not a trainer checkpoint (no trainer_state.pt)")
    state = safe_torch_load(path / "trainer_state.pt")
    if state["num_processes"] != acc.num_processes:
        raise ValueError(
            f"checkpoint {path} was written by {state['num_processes']} process(es); resuming "
            f"with {acc.num_processes} would change the batch and the RNG streams"
        )
    saved = load_safetensors(path / "trainable.safetensors")
    params = _trainable(trainer)
    if set(saved) != set(params):
        diff = sorted(set(saved) ^ set(params))[:5]
        raise ValueError(f"checkpoint {path} does not match this model's trainable weights: {diff}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name].to(p.device, p.dtype))
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.kl_controller.load_state_dict(state["kl_controller"])
    for key, value in state["trainer_state"].items():
        setattr(trainer.state, key, value)
    trainer.perm_generator.set_state(state["perm_generator"])
    rng = safe_torch_load(path / f"rng_state_{acc.process_index}.pt")
    set_rng_state(rng)
    trainer.sample_generator.set_state(rng["sample_generator"])
