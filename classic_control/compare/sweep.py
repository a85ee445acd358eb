"""The sweep: every (env, algo, seed) run under one budget and eval protocol, in worker processes.

Resumable by construction: a run whose record exists is skipped; a run
whose folder holds a checkpoint continues from it (``Trainer`` resume);
anything else starts fresh. Records are written once, atomically, at the
end of a run, so a kill never leaves a half-written or overwritten record.
The worker processes exit when the sweep's process dies; Ctrl-C or SIGTERM
makes every running run save a checkpoint and stop, then the sweep returns.
Runs are ordered seed by seed (all algos of seed 0 first), so a sweep cut
short still has about as many seeds for every algorithm.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rlhf_pg.utils.io import atomic_write_text

from .. import rundir
from ..config import ConfigError
from ..lifetime import exit_with_parent, stop_on_sigterm
from ..metrics import ELAPSED, EVAL_RETURN, EVAL_STD
from ..settings import resolve
from . import records

CHECKPOINT_EVERY = 20_000  # env steps; what a killed sweep loses per run at most
SB3_PREFIX = "sb3-"
_POLL_S = 0.5  # how often the parent looks for a stop request while runs are going
_STOP_GRACE_S = 120.0  # how long stopped runs get to save their checkpoints


class RunInterrupted(Exception):
    """A run stopped on request after saving its checkpoint; the next sweep resumes it."""


# what a worker process is doing, for its SIGTERM handler
_WORKER: dict[str, Any] = {"trainer": None, "running": False, "stopping": False}


def _init_worker(parent: int) -> None:
    """Worker process setup: die with the sweep's process; let it decide when to stop."""
    exit_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # on Ctrl-C the parent sends SIGTERM
    signal.signal(signal.SIGTERM, _worker_sigterm)


def _worker_sigterm(signum: int, frame: object) -> None:
    _WORKER["stopping"] = True  # a run queued to this worker after the stop never starts
    trainer = _WORKER["trainer"]
    if trainer is not None:
        trainer.request_stop()  # checkpoint, then ``run_ours`` raises RunInterrupted
    elif _WORKER["running"]:
        raise RunInterrupted("stopped")  # a baseline run: nothing to checkpoint


@dataclass(frozen=True)
class RunSpec:
    algo: str  # one of config.ALGOS, or "sb3-<algo>" for a Stable-Baselines3 baseline
    env_id: str
    seed: int
    steps: int
    eval_every: int
    eval_episodes: int

    @property
    def name(self) -> str:
        return f"{self.env_id} {self.algo} seed{self.seed}"

    @property
    def cores(self) -> int:
        """Processes the run keeps busy (A3C: its workers), for scheduling."""
        return _a3c_workers(self.env_id) if self.algo == "a3c" else 1


@functools.cache
def _a3c_workers(env_id: str) -> int:
    return resolve("a3c", env_id, {})[0].num_workers


def plan(
    algos: Sequence[str],
    envs: Sequence[str],
    seeds: int,
    steps: int,
    eval_every: int,
    eval_episodes: int,
) -> list[RunSpec]:
    """All runs of a sweep, seed-major so that an interrupted sweep stays balanced."""
    return [
        RunSpec(algo, env, seed, steps, eval_every, eval_episodes)
        for seed in range(seeds)
        for env in envs
        for algo in algos
    ]


def train_overrides(spec: RunSpec) -> dict[str, Any]:
    return {
        "seed": spec.seed,
        "total_steps": spec.steps,
        "eval_every": spec.eval_every,
        "eval_episodes": spec.eval_episodes,
        "checkpoint_every": CHECKPOINT_EVERY,
        "torch_threads": 1,
    }


def run_ours(spec: RunSpec, out: Path) -> dict[str, Any]:
    """Train one of our agents (resuming its checkpoint if there is one); returns the record."""
    from ..trainer import Trainer

    cfg, preset = resolve(spec.algo, spec.env_id, train_overrides(spec))
    run_dir = records.run_path(out, spec.env_id, spec.algo, spec.seed)
    resumed = (run_dir / rundir.CHECKPOINT).exists()
    if resumed:
        saved = rundir.read_config(run_dir)
        for key in ("seed", "total_steps", "eval_every", "eval_episodes"):
            if getattr(saved, key) != getattr(cfg, key):
                raise ConfigError(
                    f"{run_dir} was started with {key}={getattr(saved, key)}, "
                    f"not {getattr(cfg, key)}; remove it to restart that run"
                )
        cfg = saved  # finish the run with the settings it was started with
    t0 = time.perf_counter()
    with rundir.claim(run_dir):
        trainer = Trainer(cfg, run_dir)
        _WORKER["trainer"] = trainer
        try:
            final = trainer.train(resume=resumed, show_progress=False)
        finally:
            _WORKER["trainer"] = None
            trainer.close()
    if final is None:
        raise RunInterrupted(f"stopped at {trainer.env_steps} env steps, checkpoint saved")
    rows = rundir.read_metrics(run_dir)
    curve = [
        {k: r[k] for k in ("env_steps", EVAL_RETURN, EVAL_STD, ELAPSED)}
        for r in rows
        if EVAL_RETURN in r
    ]
    train_time = float(trainer.progress["time"])
    return {
        "source": "classic_control",
        "preset": preset,
        "config": cfg.to_dict(),
        "curve": curve,
        "final_eval": {k: final[k] for k in ("mean_return", "std_return", "returns")},
        "env_steps": trainer.env_steps,
        "train_time_s": train_time,
        "steps_per_s": trainer.env_steps / max(train_time, 1e-9),
        "session_wall_clock_s": time.perf_counter() - t0,
        "resumed": resumed,
        "run_dir": str(run_dir.relative_to(out)),
    }


def execute(spec: RunSpec, out: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Run one spec in a worker process and write its record; returns a short summary."""
    import torch

    torch.set_num_threads(1)
    path = records.record_path(out, spec.env_id, spec.algo, spec.seed)
    if _WORKER["stopping"]:
        raise RunInterrupted("the sweep is stopping")
    _WORKER["running"] = True
    try:
        if spec.algo.startswith(SB3_PREFIX):
            from .baselines_sb3 import run_sb3

            body = run_sb3(spec, out)
        else:
            body = run_ours(spec, out)
    finally:
        _WORKER["running"] = False
    protocol = {k: getattr(spec, k) for k in records.PROTOCOL_KEYS}
    record = {"algo": spec.algo, "env_id": spec.env_id, "seed": spec.seed, "protocol": protocol}
    records.write_record(path, {**record, **body, **meta})
    failed = records.failed_path(out, spec.env_id, spec.algo, spec.seed)
    failed.unlink(missing_ok=True)
    return {
        "name": spec.name,
        "final": body["final_eval"]["mean_return"],
        "time": body["train_time_s"],
    }


@dataclass
class SweepResult:
    finished: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    interrupted: list[str] = dataclasses.field(default_factory=list)
    stopped: bool = False  # by SIGTERM (a Ctrl-C re-raises KeyboardInterrupt instead)


def _pick(pending: list[RunSpec], free: int, idle: bool) -> RunSpec | None:
    """The next run in order if it fits the free cores (in order: a wide A3C run waits for
    cores rather than being overtaken until the end; one wider than --jobs runs alone)."""
    if pending and (pending[0].cores <= free or idle):
        return pending.pop(0)
    return None


def run_sweep(
    specs: Sequence[RunSpec], out: Path, *, jobs: int, show_progress: bool = True
) -> SweepResult:
    """Run every spec without a record, ``jobs`` cores' worth at a time. On SIGTERM or
    Ctrl-C the running runs save a checkpoint and stop (``SweepResult.stopped``, or
    ``KeyboardInterrupt`` re-raised), and no new run starts."""
    out = Path(out)
    result = SweepResult()
    pending = []
    for spec in specs:
        done = records.record_path(out, spec.env_id, spec.algo, spec.seed).exists()
        (result.skipped if done else pending).append(spec.name if done else spec)
    meta = records.sweep_meta()
    bar = tqdm(
        total=len(specs),
        initial=len(result.skipped),
        unit="run",
        desc="sweep",
        disable=not show_progress,
        dynamic_ncols=True,
    )
    running: dict[Future, RunSpec] = {}
    stop, interrupted = threading.Event(), False
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )
    with pool as ex, stop_on_sigterm(stop.set):
        try:
            while (pending or running) and not stop.is_set():
                free = jobs - sum(s.cores for s in running.values())
                while (spec := _pick(pending, free, idle=not running)) is not None:
                    running[ex.submit(execute, spec, out, meta)] = spec
                    free -= spec.cores
                finished, _ = wait(running, timeout=_POLL_S, return_when=FIRST_COMPLETED)
                _collect(finished, running, out, result, bar)
        except KeyboardInterrupt:
            interrupted = True
        if stop.is_set() or interrupted:
            _stop_runs(ex, running, out, result, bar)
        bar.close()
    if interrupted:
        raise KeyboardInterrupt
    result.stopped = stop.is_set()
    return result


def _stop_runs(
    ex: ProcessPoolExecutor, running: dict[Future, RunSpec], out: Path, result, bar
) -> None:
    """Ask every worker to checkpoint its run and stop; wait for them (bounded)."""
    for fut in running:
        fut.cancel()  # not started yet: never will be
    for proc in _workers(ex):
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
    finished, _ = wait(running, timeout=_STOP_GRACE_S)
    _collect(finished, running, out, result, bar)
    if running:  # past the grace period: their last checkpoints will do
        for proc in _workers(ex):
            proc.kill()
    # wait=True joins the pool's manager thread (every worker is finished or killed by now):
    # with wait=False the later shutdown of the `with` block would not join it, and a manager
    # thread still closing its wake-up pipe at interpreter exit races CPython 3.11's exit hook
    # (a "Bad file descriptor" traceback after a clean stop)
    ex.shutdown(wait=True, cancel_futures=True)


def _workers(ex: ProcessPoolExecutor) -> list:
    """The pool's worker processes (``_processes`` is private, but stable since 3.8; an
    executor without it just gets no signal, and its runs finish instead)."""
    return list((getattr(ex, "_processes", None) or {}).values())


def _collect(finished, running: dict[Future, RunSpec], out: Path, result: SweepResult, bar):
    """Book the finished futures: a record, a failure (kept in failed/) or an interruption."""
    for fut in finished:
        spec = running.pop(fut)
        if fut.cancelled():
            continue
        try:
            summary = fut.result()
        except RunInterrupted:
            result.interrupted.append(spec.name)
            continue
        except Exception as e:  # keep the sweep going; the run is retried next time
            result.failed.append(spec.name)
            path = records.failed_path(out, spec.env_id, spec.algo, spec.seed)
            atomic_write_text(path, "".join(traceback.format_exception(e)))
            bar.write(f"FAILED {spec.name}: {type(e).__name__}: {e}")
        else:
            result.finished.append(spec.name)
            bar.set_postfix_str(
                f"last: {summary['name']} -> {summary['final']:.1f} ({summary['time']:.0f}s)"
            )
        bar.update(1)
