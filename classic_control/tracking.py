"""Trackers a run logs to besides ``metrics.jsonl`` / ``metrics.csv`` (``report_to``).

TensorBoard goes through ``torch.utils.tensorboard.SummaryWriter`` (it needs the
``tensorboard`` package, a dependency of the project): one scalar per metric of every
per-update row, at global step = env steps, under the row's own names (``loss/policy``,
``eval/return_mean``, ...), in ``RUN_DIR/tensorboard/``. View with
``tensorboard --logdir RUN_DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import ConfigError

TENSORBOARD_DIR = "tensorboard"


def check_trackers(report_to: list[str]) -> None:
    """One line, before any training, if a tracker's package is missing."""
    if "tensorboard" in report_to:
        try:
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise ConfigError(
                "report_to tensorboard needs the tensorboard package; "
                "install it with pip install tensorboard"
            ) from None


class Trackers:
    """The run's trackers, fed the same rows as ``metrics.jsonl``."""

    def __init__(self, run_dir: Path, report_to: list[str], resume_step: int | None) -> None:
        """``resume_step``: the env steps of the checkpoint a resumed run continues from; what
        an earlier session logged after it (the lost part of the run) is purged, as the
        metrics file is cut back."""
        check_trackers(report_to)
        self.writer = None
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge)

    def log(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(row["env_steps"])
        for key, value in row.items():
            if key != "env_steps" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, float(value), global_step=step)
        self.writer.flush()  # a killed run keeps what it logged, as metrics.jsonl does

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
