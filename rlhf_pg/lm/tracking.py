"""Per-step metrics: accelerate trackers, a JSONL file, and user callbacks."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..utils.io import filter_jsonl
from ..utils.run_folder import lock_run_folder, prepare_fresh_run


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


TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


def tracker_names(report_to: list[str]) -> list[str]:
    """accelerate ``log_with`` names for ``report_to`` (already normalised: no "none").

    "all" means every supported tracker that is installed, as in transformers; a tracker
    named explicitly must be installed, else one line says which package to add (trackio
    is the optional extra ``rlhf-pg[trackio]``). The names are accelerate's ``LoggerType``
    values, so accelerate's own integration does the logging."""
    if "all" in report_to:
        return [n for n, pkg in TRACKER_PACKAGES.items() if importlib.util.find_spec(pkg)]
    wanted = list(dict.fromkeys(report_to))
    for name in wanted:
        if name not in TRACKER_PACKAGES:
            raise ValueError(
                f"report_to={name!r} is not valid; choose from {', '.join(TRACKER_PACKAGES)}, "
                "all or none"
            )
        if importlib.util.find_spec(TRACKER_PACKAGES[name]) is None:
            extra = " (or pip install 'rlhf-pg[trackio]')" if name == "trackio" else ""
            raise ValueError(
                f"report_to={name!r} needs the {TRACKER_PACKAGES[name]} package, which is not "
                f"installed: pip install {TRACKER_PACKAGES[name]}{extra}, or use report_to='none'"
            )
    return wanted


# what a run writes into output_dir: any of these makes the folder "used"
RUN_OUTPUTS = ("metrics.jsonl", "checkpoint-*", "completions.jsonl")  # the last: PPO stage evals
# leftovers of killed saves, deleted with the outputs when a new run overwrites them
RUN_LEFTOVERS = (".checkpoint-*.partial", ".checkpoint-*.old", ".metrics.jsonl.*.tmp")


class MetricsWriter:
    """Appends one JSON line per step (main process only) and forwards to the trackers.

    The main process holds ``output_dir``'s lock (:func:`lock_run_folder`) from
    construction until :meth:`close`. The writer also applies the rule for a used
    ``output_dir``: a new run (no checkpoint loaded) refuses a folder holding
    ``metrics.jsonl`` or checkpoints unless ``overwrite``, which deletes them first; a
    resumed run keeps the lines up to the checkpoint's step.
    """

    def __init__(self, accelerator, config) -> None:
        """``config``: the trainer's PPOConfig (``output_dir``, ``overwrite_output_dir``).
        An output_dir that cannot be created or written, or is in use, fails here."""
        self.accelerator = accelerator
        self.output_dir = Path(config.output_dir) if config.output_dir else None
        self.path = self.output_dir / "metrics.jsonl" if self.output_dir else None
        self.overwrite = config.overwrite_output_dir
        self.started = self.output_dir is None  # nothing to check without a folder
        self.lock = (
            lock_run_folder(self.output_dir, "output_dir")
            if self.output_dir and accelerator.is_main_process
            else None
        )

    def close(self) -> None:
        """Free output_dir for another writer (also done on exit and garbage collection)."""
        if self.lock is not None:
            self.lock.release()

    def start_run(self) -> None:
        """Called before anything is written: refuses (or, with ``overwrite``, clears) a
        folder that holds an earlier run. Every process checks, so all of them stop."""
        if self.started:
            return
        saved = sorted(self.output_dir.glob("checkpoint-*"))
        resume = f"trainer.load_checkpoint('{saved[-1]}')" if saved else "a checkpoint"
        hint = f"resume it with {resume}, set overwrite_output_dir=True to start it clean, "
        if self.accelerator.is_main_process or not self.overwrite:  # only the main deletes
            prepare_fresh_run(
                self.output_dir,
                RUN_OUTPUTS,
                overwrite=self.overwrite,
                also_remove=RUN_LEFTOVERS,
                what="output_dir",
                hint=hint,
            )
        self.accelerator.wait_for_everyone()
        self.started = True

    def resume(self, step: int) -> None:
        """A checkpoint of ``step`` was loaded: drop the lines of later steps (logged by a
        run killed before it saved them), atomically."""
        if self.path is not None and self.accelerator.is_main_process:
            filter_jsonl(
                self.path, lambda rec: isinstance(rec.get("step"), int) and rec["step"] <= step
            )
        self.accelerator.wait_for_everyone()
        self.started = True

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if self.accelerator.trackers:
            self.accelerator.log(metrics, step=step)
        self.start_run()  # every process calls write(): the check may wait for the others
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
