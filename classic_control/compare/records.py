"""Results folder layout, per-run JSON records and the sweep manifest.

A results folder holds::

    sweep.json                           the protocol (budget, eval schedule) all runs share
    records/<env>/<algo>/seed<k>.json    one finished run each, written once, atomically
    runs/<env>/<algo>/seed<k>/           the run folder (checkpoint, metrics, models)
    failed/<env>__<algo>__seed<k>.txt    the error of a run that crashed (retried next time)
    report/                              report.md and the plots, rebuilt from records alone

A record is never overwritten: a finished run is skipped by the next sweep.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from rlhf_pg.utils.io import atomic_write_json

from ..config import ConfigError
from ..metrics import upgrade_row

# 2: curve points use the metric names (eval/return_mean, ...); schema-1 records are read too
SCHEMA = 2
MANIFEST = "sweep.json"
PROTOCOL_KEYS = ("steps", "eval_every", "eval_episodes")
# The envs' "solved" thresholds (gymnasium's reward_threshold for these ids; Pendulum has none,
# -200 is the target of the off-policy benchmarks).
THRESHOLDS: dict[str, float] = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "Pendulum-v1": -200.0}
_PACKAGES = ("torch", "gymnasium", "numpy", "stable_baselines3", "sb3_contrib")
_REQUIRED = ("algo", "env_id", "seed", "curve", "final_eval", "env_steps", "train_time_s")


def threshold(env_id: str) -> float | None:
    if env_id in THRESHOLDS:
        return THRESHOLDS[env_id]
    import gymnasium as gym

    try:
        return gym.spec(env_id).reward_threshold
    except gym.error.Error:
        return None


def record_path(out: Path, env_id: str, algo: str, seed: int) -> Path:
    return Path(out) / "records" / env_id / algo / f"seed{seed}.json"


def run_path(out: Path, env_id: str, algo: str, seed: int) -> Path:
    return Path(out) / "runs" / env_id / algo / f"seed{seed}"


def failed_path(out: Path, env_id: str, algo: str, seed: int) -> Path:
    return Path(out) / "failed" / f"{env_id}__{algo}__seed{seed}.txt"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return out


def git_state() -> dict[str, Any]:
    """Commit of the checkout holding this package, and whether it has local changes."""
    repo = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def machine() -> dict[str, Any]:
    import os

    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "python_executable": sys.executable,
    }


def sweep_meta() -> dict[str, Any]:
    """What every record of one sweep invocation shares (gathered once, in the parent)."""
    return {"versions": versions(), "git": git_state(), "machine": machine()}


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a finished run's record atomically; refuse to replace an existing one."""
    if path.exists():
        raise FileExistsError(f"{path} already holds a finished run; records are never replaced")
    record = {
        "schema": SCHEMA,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **record,
    }
    atomic_write_json(path, record)


def read_record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not a valid record ({e}); move it away and re-run") from None
    missing = [k for k in _REQUIRED if k not in rec]
    if missing:
        raise ConfigError(f"{path} is not a compare record (missing {', '.join(missing)})")
    rec["curve"] = [upgrade_row(point) for point in rec["curve"]]
    return rec


def load_records(out: Path) -> list[dict[str, Any]]:
    """Every finished record under ``out/records`` (temporary files of torn writes ignored)."""
    root = Path(out) / "records"
    if not root.is_dir():
        raise ConfigError(
            f"{str(out)!r} holds no records/ folder; pass a folder written by "
            "`python -m classic_control compare`"
        )
    return [read_record(p) for p in sorted(root.glob("*/*/seed*.json"))]


def check_manifest(out: Path, protocol: dict[str, Any]) -> None:
    """Refuse to mix runs of different budgets or eval schedules in one results folder."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return
    saved = _read_manifest(path)
    clash = [k for k in PROTOCOL_KEYS if saved.get(k) != protocol.get(k)]
    if clash:
        diff = ", ".join(f"{k}={saved.get(k)} (asked {protocol.get(k)})" for k in clash)
        raise ConfigError(
            f"{str(out)!r} holds a sweep with {diff}; records of different protocols are "
            "not comparable: use another --out"
        )


def update_manifest(out: Path, protocol: dict[str, Any], grid: dict[str, list]) -> None:
    """Record the protocol and the union of algos, envs and seeds ever asked for."""
    path = Path(out) / MANIFEST
    saved = _read_manifest(path) if path.exists() else {}
    merged = {**saved, **protocol}
    for key, values in grid.items():
        merged[key] = sorted(set(saved.get(key, [])) | set(values), key=str)
    atomic_write_json(path, merged)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is damaged ({e}); move it away and re-run") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} is damaged (not a JSON object); move it away and re-run")
    return saved
