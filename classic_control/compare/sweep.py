"""The sweep: every (env, algo, seed) run under one budget and eval protocol, in worker processes.

Resumable by construction: a run whose record exists is skipped; a run
whose folder holds a checkpoint continues from it (``Trainer`` resume);
anything else starts fresh. Records are written once, atomically, at the
end of a run, so a kill never leaves a half-written or overwritten record.
Runs are ordered seed by seed (all algos of seed 0 first), so a sweep cut
short still has about as many seeds for every algorithm.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing as mp
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
from ..metrics import ELAPSED, EVAL_RETURN, EVAL_STD
from ..settings import resolve
from . import records

CHECKPOINT_EVERY = 20_000  # env steps; what a killed sweep loses per run at most
SB3_PREFIX = "sb3-"


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
    trainer = Trainer(cfg, run_dir)
    try:
        final = trainer.train(resume=resumed, show_progress=False)
    finally:
        trainer.close()
    assert final is not None
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
    if spec.algo.startswith(SB3_PREFIX):
        from .baselines_sb3 import run_sb3

        body = run_sb3(spec, out)
    else:
        body = run_ours(spec, out)
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


def _pick(pending: list[RunSpec], free: int, idle: bool) -> RunSpec | None:
    """The next run in order if it fits the free cores (in order: a wide A3C run waits for
    cores rather than being overtaken until the end; one wider than --jobs runs alone)."""
    if pending and (pending[0].cores <= free or idle):
        return pending.pop(0)
    return None


def run_sweep(
    specs: Sequence[RunSpec], out: Path, *, jobs: int, show_progress: bool = True
) -> SweepResult:
    """Run every spec without a record, ``jobs`` cores' worth at a time."""
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
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
        try:
            while pending or running:
                free = jobs - sum(s.cores for s in running.values())
                while (spec := _pick(pending, free, idle=not running)) is not None:
                    running[ex.submit(execute, spec, out, meta)] = spec
                    free -= spec.cores
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    spec = running.pop(fut)
                    try:
                        summary = fut.result()
                    except Exception as e:  # keep the sweep going; the run is retried next time
                        result.failed.append(spec.name)
                        path = records.failed_path(out, spec.env_id, spec.algo, spec.seed)
                        text = "".join(traceback.format_exception(e))
                        atomic_write_text(path, text)
                        bar.write(f"FAILED {spec.name}: {type(e).__name__}: {e}")
                    else:
                        result.finished.append(spec.name)
                        bar.set_postfix_str(
                            f"last: {summary['name']} -> {summary['final']:.1f} "
                            f"({summary['time']:.0f}s)"
                        )
                    bar.update(1)
        except KeyboardInterrupt:
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
    return result
