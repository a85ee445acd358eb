"""Trainer checkpoints for an identical continuation, written atomically.

Layout of ``checkpoint-XXXXXX/``::

    policy/                   save_pretrained directory (model or adapters, value head, tokenizer)
    trainable.safetensors     every trainable parameter, by name (exact resume)
    trainer_state.pt          optimizer, scheduler, KL controller, step, data position
    rng_state_<rank>.pt       each process's torch / python / numpy RNG states
    trainer_config.json       the PPOConfig

Under a sharded engine (DeepSpeed ZeRO-2/3, FSDP2) the weights and optimizer state are
shards, written and read by the engine through ``accelerator.save_state`` / ``load_state``
into ``accelerate_state/`` instead of ``trainable.safetensors`` and the ``optimizer`` entry
(``policy/`` still holds the gathered full weights). Those formats are the engines' own
(DeepSpeed's and torch.distributed.checkpoint's files are pickles): resume only from
checkpoints you wrote.

The directory is assembled under ``.<name>.partial`` and then takes the place of the
previous version with :func:`~rlhf_pg.utils.io.replace_dir`, so a reader always finds the
previous checkpoint or the complete new one; a kill mid-replacement is completed by the
next save or load. Loading reads and checks every file first and only then restores, so
a broken or foreign checkpoint changes nothing (:class:`CheckpointError`, one line naming
the file).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..utils.config import ConfigError
from ..utils.io import (
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write_json,
    load_safetensors,
    partial_dir,
    recover_replaced_dir,
    remove_stale_temporaries,
    replace_dir,
    resolve_replaced_dir,
    safe_torch_load,
)
from ..utils.rng import rng_state, set_rng_state

STATE_KEYS = (
    "scheduler",
    "kl_controller",
    "trainer_state",
    "perm_generator",
    "num_processes",
)
RNG_KEYS = ("torch", "python", "numpy", "sample_generator")
ENGINE_STATE = "accelerate_state"  # accelerator.save_state folder of a sharded run


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unreadable, incomplete or from another set-up."""


def _trainable(trainer) -> dict[str, torch.Tensor]:
    return {n: p for n, p in trainer.unwrapped_model.named_parameters() if p.requires_grad}


def _own_folder(trainer, folder: Path) -> bool:
    """Whether ``folder`` is the trainer's locked output_dir (where it may delete leftovers)."""
    out = trainer.config.output_dir
    return bool(out) and folder.resolve() == Path(out).resolve()


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-step ``checkpoint-*`` folder of a run, or None."""
    found = sorted(Path(output_dir).glob("checkpoint-[0-9]*"))
    return found[-1] if found else None


def _engine_name(trainer) -> str:
    return trainer.engine or "none"


def save_checkpoint(trainer, path: str | Path) -> Path:
    acc, sharded = trainer.accelerator, trainer.engine is not None
    final = Path(path)
    tmp = partial_dir(final)
    trainer.writer.start_run()
    acc.wait_for_everyone()
    if acc.is_main_process:
        # leftovers of killed saves: this checkpoint's, and every temporary in our folder
        recover_replaced_dir(final)
        if _own_folder(trainer, final.parent):
            remove_stale_temporaries(final.parent)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    rng = {**rng_state(), "sample_generator": trainer.sample_generator.get_state()}
    atomic_torch_save(rng, tmp / f"rng_state_{acc.process_index}.pt")
    trainer.save_pretrained(str(tmp / "policy"))  # every process: sharded weights are gathered
    if sharded:  # every process writes its shards of the weights and optimizer state
        acc.save_state(str(tmp / ENGINE_STATE))
    if acc.is_main_process:
        if not sharded:
            atomic_save_safetensors(_trainable(trainer), tmp / "trainable.safetensors")
        state = {
            "optimizer": None if sharded else trainer.optimizer.state_dict(),
            "engine": _engine_name(trainer),
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
        replace_dir(tmp, final)
    acc.wait_for_everyone()
    for cb in trainer.callbacks:
        cb.on_save(trainer, final)
    return final


def _read(file: Path, reader) -> Any:
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} is missing")
    try:
        return reader(file)
    except Exception as err:  # any parser's error on a truncated or foreign file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(
            f"checkpoint file {file} is unreadable (truncated?): {first}"
        ) from None


def _check_state(trainer, file: Path, state: Any) -> None:
    """The trainer state file holds every entry, shaped for this trainer."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} holds a {type(state).__name__}, not a trainer state")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{file} has no {', '.join(missing)} entry")
    n, here = state["num_processes"], trainer.accelerator.num_processes
    if n != here:
        raise CheckpointError(
            f"{file} was written by {n} process(es); resuming with {here} would change the "
            f"batch and the RNG streams"
        )
    written, mine = state.get("engine", "none"), _engine_name(trainer)
    if written != mine:
        raise CheckpointError(
            f"{file} was written under engine={written}; this trainer runs engine={mine} "
            "(the weights and optimizer state are stored differently)"
        )
    if mine == "none":
        if not isinstance(state.get("optimizer"), dict):
            raise CheckpointError(f"{file} has no optimizer entry")
        groups = [len(g["params"]) for g in state["optimizer"].get("param_groups", [])]
        want = [len(g["params"]) for g in trainer.optimizer.param_groups]
        if groups != want:
            raise CheckpointError(
                f"{file}: optimizer groups hold {groups} tensors, this one {want}"
            )
    for key, obj in (("scheduler", trainer.scheduler), ("kl_controller", trainer.kl_controller)):
        lacking = sorted(set(obj.state_dict()) - set(state[key] or {}))
        if lacking:
            raise CheckpointError(f"{file}: the {key} entry lacks {lacking}")
    lacking = sorted(set(asdict(trainer.state)) - set(state["trainer_state"] or {}))
    if lacking:
        raise CheckpointError(f"{file}: the trainer_state entry lacks {lacking}")
    perm = state["perm_generator"]
    if not isinstance(perm, torch.Tensor) or perm.shape != trainer.perm_generator.get_state().shape:
        raise CheckpointError(f"{file}: perm_generator is not a generator state")


def _check_weights(trainer, file: Path, saved: dict[str, torch.Tensor]) -> None:
    """Same trainable tensors by name and shape (another model size or LoRA set-up fails)."""
    params = _trainable(trainer)
    if set(saved) != set(params):
        diff = sorted(set(saved) ^ set(params))[:3]
        raise CheckpointError(
            f"{file} does not match this model's trainable weights (other model, estimator "
            f"or LoRA setting): {diff}"
        )
    for name, p in params.items():
        if saved[name].shape != p.shape:
            raise CheckpointError(
                f"{file}: {name} has shape {tuple(saved[name].shape)}, this model "
                f"{tuple(p.shape)} (another model size)"
            )


def read_checkpoint(trainer, path: str | Path) -> dict[str, Any]:
    """Every file of the checkpoint, read and checked against ``trainer``; changes nothing."""
    path = Path(path)
    folder = resolve_replaced_dir(path)  # a kill mid-replacement: its new (or old) version
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"checkpoint {path} is a file, not a checkpoint folder")
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {path} not found (no such folder)")
    if (
        not (folder / "trainer_state.pt").exists()
        and not (folder / "trainable.safetensors").exists()
    ):
        raise CheckpointError(f"{path} is not a trainer checkpoint (no trainer_state.pt)")
    config = _read(folder / "trainer_config.json", lambda f: json.loads(f.read_text()))
    mine = trainer.config.estimator
    if not isinstance(config, dict) or config.get("estimator") != mine:
        theirs = config.get("estimator") if isinstance(config, dict) else None
        raise CheckpointError(
            f"{folder / 'trainer_config.json'}: written with estimator={theirs!r}, this "
            f"trainer runs estimator={mine!r}"
        )
    weights = None
    if trainer.engine is None:
        weights = _read(folder / "trainable.safetensors", load_safetensors)
        _check_weights(trainer, folder / "trainable.safetensors", weights)
    state = _read(folder / "trainer_state.pt", safe_torch_load)
    _check_state(trainer, folder / "trainer_state.pt", state)
    if trainer.engine is not None and not any((folder / ENGINE_STATE).glob("*")):
        raise CheckpointError(f"checkpoint folder {folder / ENGINE_STATE} is missing or empty")
    acc = trainer.accelerator
    for rank in range(acc.num_processes):  # every rank's file, so all ranks agree
        if not (folder / f"rng_state_{rank}.pt").is_file():
            raise CheckpointError(f"checkpoint file {folder / f'rng_state_{rank}.pt'} is missing")
    rng_file = folder / f"rng_state_{acc.process_index}.pt"
    rng = _read(rng_file, safe_torch_load)
    lacking = [k for k in RNG_KEYS if not isinstance(rng, dict) or k not in rng]
    if lacking:
        raise CheckpointError(f"{rng_file} has no {', '.join(lacking)} state")
    return {"state": state, "weights": weights, "rng": rng, "folder": folder}


def load_checkpoint(trainer, path: str | Path) -> None:
    """Restore weights, optimizer, scheduler, KL controller, step, data position and RNG;
    all or nothing. Lines of ``metrics.jsonl`` after the checkpoint's step are dropped."""
    path, acc = Path(path), trainer.accelerator
    ckpt = read_checkpoint(trainer, path)
    state = ckpt["state"]
    acc.wait_for_everyone()
    if acc.is_main_process and _own_folder(trainer, path.parent):
        recover_replaced_dir(path)  # finish a replacement a kill interrupted
        remove_stale_temporaries(path.parent)
    if ckpt["weights"] is None:  # sharded: the engine reads its own shards (all processes)
        acc.load_state(str(ckpt["folder"] / ENGINE_STATE))
    else:
        with torch.no_grad():
            for name, p in _trainable(trainer).items():
                p.copy_(ckpt["weights"][name].to(p.device, p.dtype))
        trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.kl_controller.load_state_dict(state["kl_controller"])
    for key, value in state["trainer_state"].items():
        setattr(trainer.state, key, value)
    trainer.perm_generator.set_state(state["perm_generator"])
    set_rng_state(ckpt["rng"])
    trainer.sample_generator.set_state(ckpt["rng"]["sample_generator"])
    trainer.writer.resume(trainer.state.step)


__all__ = [
    "CheckpointError",
    "latest_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
