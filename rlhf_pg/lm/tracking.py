"""Per-step metrics: accelerate trackers, a JSONL file, and user callbacks."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


class TrainerCallback:
    """Subclass and override what you need; every hook receives the trainer."""

    def on_rollout(self, trainer, rollout) -> dict[str, float] | None:
        """Called in :meth:`PPOTrainer.train` on every process after a rollout is scored,
        before the update. Return extra metrics of this process's rollout (e.g. a gold
        score); the trainer averages them over processes and logs them with the step."""
        return None

    def on_step_end(self, trainer, metrics: dict[str, float]) -> None:
        """Called on every process after each step with the global metrics."""

    def on_save(self, trainer, path: Path) -> None:
        """Called after a checkpoint is complete."""

    def on_train_end(self, trainer) -> None:
        """Called once when :meth:`PPOTrainer.train` finishes."""


class _FunctionCallback(TrainerCallback):
    def __init__(self, fn: Callable[[int, dict[str, float]], Any]) -> None:
        self.fn = fn

    def on_step_end(self, trainer, metrics: dict[str, float]) -> None:
        self.fn(trainer.state.step, metrics)


def as_callback(cb: TrainerCallback | Callable) -> TrainerCallback:
    """A TrainerCallback, or a plain ``fn(step, metrics)`` metrics hook."""
    if isinstance(cb, TrainerCallback):
        return cb
    if callable(cb):
        return _FunctionCallback(cb)
    raise TypeError(f"callback must be a TrainerCallback or a callable, got {cb!r}")


def tracker_names(log_with: str) -> list[str]:
    """accelerate tracker names for ``log_with``; raises if the package is missing."""
    wanted = {"none": [], "tensorboard": ["tensorboard"], "wandb": ["wandb"]}.get(
        log_with, ["tensorboard", "wandb"]
    )
    for name in wanted:
        if importlib.util.find_spec(name) is None:
            raise ValueError(
                f"log_with={log_with!r} needs the {name} package, which is not installed "
                f"(pip install {name}), or use log_with='none'"
            )
    return wanted


class MetricsWriter:
    """Appends one JSON line per step (main process only) and forwards to the trackers."""

    def __init__(self, accelerator, output_dir: str) -> None:
        self.accelerator = accelerator
        self.path = Path(output_dir) / "metrics.jsonl" if output_dir else None

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if self.accelerator.trackers:
            self.accelerator.log(metrics, step=step)
        if self.path is None or not self.accelerator.is_main_process:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in metrics.items()
        }
        # whole lines only: a kill can lose the last line, never damage earlier ones
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
