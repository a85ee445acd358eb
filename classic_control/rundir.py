"""The run folder: resolved config, metrics, curve, models, checkpoint, eval.json.

Every file is written atomically (``rlhf_pg.utils.io``); ``metrics.jsonl`` is
append-only and is cut back to the last checkpoint when a run resumes.

Metric names are those of ``classic_control.metrics``; rows of older runs, written
under flat names, are renamed when read.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from rlhf_pg.utils.io import (
    atomic_path,
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    load_safetensors,
    remove_stale_temporaries,
    safe_torch_load,
)
from rlhf_pg.utils.run_folder import OutputDirError, lock_run_folder

from .config import Config, ConfigError
from .metrics import EVAL_RETURN, TRAIN_RETURN, upgrade_row
from .networks import ActorCritic, upgrade_state_dict
from .settings import read_config as _read_config_file

CONFIG, METRICS, CHECKPOINT, EVAL = "config.yaml", "metrics.jsonl", "checkpoint.pt", "eval.json"
MODEL_FINAL, MODEL_BEST = "model_final.safetensors", "model_best.safetensors"


def default_run_dir(cfg: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    env = re.sub(r"[^A-Za-z0-9_.-]", "_", cfg.env_id)  # module:EnvId, namespace/EnvId
    return Path("runs") / f"{env}_{cfg.algo}_s{cfg.seed}_{stamp}"


def write_config(run_dir: Path, cfg: Config) -> None:
    atomic_write_text(run_dir / CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def read_config(run_dir: Path) -> Config:
    """The run's resolved config; a ConfigError if ``run_dir`` is not a run folder."""
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise ConfigError(f"run dir {str(run_dir)!r} does not exist")
    if not path.is_file():
        raise ConfigError(
            f"{str(run_dir)!r} is not a classic_control run (no {CONFIG}); "
            "pass a folder created by `python -m classic_control train`"
        )
    return _read_config_file(path)


class MetricsLog:
    """Per-update rows appended to metrics.jsonl (flushed each row)."""

    def __init__(self, run_dir: Path, keep_rows: int | None = None) -> None:
        self.path = run_dir / METRICS
        rows = read_metrics(run_dir) if self.path.exists() else []
        if keep_rows is not None:
            # rows logged after the last checkpoint belong to the lost part of the run; the
            # kept ones are rewritten under the current metric names
            rows = rows[:keep_rows]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))
        self.rows = rows
        self.file = open(self.path, "a")  # noqa: SIM115 - kept open for the whole run

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    lines = (Path(run_dir) / METRICS).read_text().splitlines()
    rows = []
    for line in lines:
        try:
            rows.append(upgrade_row(json.loads(line)))
        except json.JSONDecodeError:  # a torn last line from a kill mid-write
            break
    return rows


def write_csv(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def plot_curve(run_dir: Path, rows: list[dict[str, Any]], title: str, out: Path | None = None):
    """Training episode return and deterministic eval return against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["env_steps"], r[TRAIN_RETURN]) for r in rows if TRAIN_RETURN in r]
    evals = [(r["env_steps"], r[EVAL_RETURN]) for r in rows if EVAL_RETURN in r]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    if train:
        ax.plot(*zip(*train), lw=1, alpha=0.6, label="training episodes (stochastic)")
    if evals:
        ax.plot(*zip(*evals), "o-", lw=2, ms=3, label="eval (deterministic, mean)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(out or run_dir / "curve.png") as tmp:
        fig.savefig(tmp, format="png")  # the temporary name has no .png to go by
    plt.close(fig)


def save_model(path: Path, agent: torch.nn.Module, obs_rms: dict, meta: dict[str, Any]) -> None:
    """Weights plus observation-normaliser statistics, as safetensors."""
    tensors = {f"agent.{k}": v for k, v in agent.state_dict().items()}
    tensors["obs_rms.mean"] = torch.tensor(obs_rms["mean"], dtype=torch.float64)
    tensors["obs_rms.var"] = torch.tensor(obs_rms["var"], dtype=torch.float64)
    atomic_save_safetensors(tensors, path, metadata={k: str(v) for k, v in meta.items()})


def load_model(path: Path, agent: torch.nn.Module) -> dict:
    """Load weights into ``agent``; returns the obs-normaliser statistics. A damaged file or
    one of another network is one ``ConfigError`` line naming it."""
    try:
        tensors = load_safetensors(path)
    except Exception as e:  # safetensors' own errors are not one class
        raise ConfigError(f"cannot read {path}: {_first_line(e)}") from None
    state = {k[len("agent.") :]: v for k, v in tensors.items() if k.startswith("agent.")}
    if isinstance(agent, ActorCritic):  # a model saved before the (in, out) layout loads too
        state = upgrade_state_dict(state)
    expected = agent.state_dict()
    if set(state) != set(expected) or not {"obs_rms.mean", "obs_rms.var"} <= set(tensors):
        raise ConfigError(f"{path} is not a model of this run's network ({CONFIG})")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise ConfigError(
                f"{path}: {name} has shape {tuple(state[name].shape)}, but {CONFIG} "
                f"describes {tuple(tensor.shape)}"
            )
    agent.load_state_dict(state)
    return {
        "mean": tensors["obs_rms.mean"].tolist(),
        "var": tensors["obs_rms.var"].tolist(),
        "count": 1.0,
    }


def save_checkpoint(run_dir: Path, state: dict) -> None:
    atomic_torch_save(state, run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path) -> dict:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} has no {CHECKPOINT} to resume from")
    if path.stat().st_size == 0:
        raise ConfigError(f"cannot read {path}: the file is empty")
    try:
        state = safe_torch_load(path)
    except Exception as e:  # a foreign or damaged file: never unpickle it
        raise ConfigError(f"cannot read {path}: {_first_line(e)}") from None
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ConfigError(f"{path} is not a classic_control checkpoint (no {', '.join(missing)})")
    return state


_CHECKPOINT_KEYS = ("agent", "algo", "collector", "rng", "progress", "metrics_rows")


def check_checkpoint(
    run_dir: Path, state: dict, cfg: Config, agent_state: dict | None = None
) -> None:
    """Refuse a checkpoint of another run before anything is restored from it: another
    algorithm or env (checkpoints record them), or (given ``agent_state``) other network
    shapes."""
    path = Path(run_dir) / CHECKPOINT
    meta = state.get("meta", {})
    for key in ("algo", "env_id"):
        if key in meta and meta[key] != getattr(cfg, key):
            raise ConfigError(
                f"{path} was saved by a run with {key}={meta[key]}, but {CONFIG} says "
                f"{key}={getattr(cfg, key)}; the files come from different runs"
            )
    if agent_state is None:
        return
    saved = state["agent"]
    if not isinstance(saved, dict) or set(saved) != set(agent_state):
        raise ConfigError(f"{path} holds another network than {CONFIG} describes")
    for name, tensor in agent_state.items():
        if getattr(saved[name], "shape", None) != tensor.shape:
            raise ConfigError(
                f"{path}: {name} has shape {tuple(getattr(saved[name], 'shape', ()))}, "
                f"but {CONFIG} describes {tuple(tensor.shape)}"
            )


def _first_line(e: BaseException) -> str:
    """An exception as one line (some, like EOFError, have no message)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def write_eval(run_dir: Path, result: dict[str, Any]) -> None:
    atomic_write_json(run_dir / EVAL, result)


def read_eval(run_dir: Path) -> dict[str, Any]:
    """The run's eval.json ({} if there is none; a damaged one is replaced, with a notice)."""
    path = Path(run_dir) / EVAL
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        warnings.warn(f"{path} is damaged; writing a new one", stacklevel=2)
        return {}
    return data


@contextlib.contextmanager
def claim(run_dir: Path, what: str = "run folder") -> Iterator[Path]:
    """Be the one writer of ``run_dir`` while inside (``RunFolderBusy`` naming the holder's
    pid otherwise; a file, a path under a file or an unwritable folder is one line too);
    leftovers of killed saves are removed first. If the command fails, a folder this call
    created is removed again unless something was written into it."""
    run_dir = Path(run_dir)
    existed, failed = run_dir.exists(), False
    lock = lock_run_folder(run_dir, what)
    try:
        remove_stale_temporaries(run_dir)
        yield run_dir
    except BaseException:
        failed = True
        raise
    finally:
        lock.release()
        if failed and not existed:
            with contextlib.suppress(OSError):  # not empty: keep what the run wrote
                run_dir.rmdir()


def check_writable_file(path: Path, what: str) -> Path:
    """One line if a file cannot be written at ``path`` (checked by creating and deleting
    a temporary file next to it), before the work that produces it."""
    path = Path(path)
    if path.is_dir():
        raise OutputDirError(f"{what} {str(path)!r} is a folder; give a file name")
    parent = path.parent
    if not parent.is_dir():
        problem = "is a file" if parent.exists() else "does not exist"
        raise OutputDirError(f"{what} {str(path)!r}: the folder {str(parent)!r} {problem}")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise OutputDirError(f"{what} {str(path)!r} cannot be written: {e.strerror}") from None
    return path
