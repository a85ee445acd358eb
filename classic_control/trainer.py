"""The training loop shared by all algorithms: collect, update, log, evaluate, checkpoint.

Everything random is seeded from ``cfg.seed`` (network init, action
sampling, minibatch order, env resets) and saved in the checkpoint, so a
resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rlhf_pg.utils.rng import rng_state, seed_everything, set_rng_state

from . import rundir
from .algos import REGISTRY, Algorithm
from .config import Config, ConfigError
from .envs import EnvSpec, ObsNormalizer, probe_env
from .evaluate import Evaluator, summary
from .metrics import ELAPSED, EVAL_RETURN, EVAL_STD, STEPS_PER_S, TRAIN_RETURN
from .networks import (
    ActorCritic,
    is_linear_layout,
    upgrade_optimizer_state,
    upgrade_state_dict,
)
from .settings import validate
from .tracking import Trackers, check_trackers


class Trainer:
    """Owns the agent, the algorithm, the collector and the run folder of one run."""

    def __init__(self, cfg: Config, run_dir: Path, spec: EnvSpec | None = None) -> None:
        validate(cfg)
        check_trackers(cfg.report_to)  # a missing package: one line before any env is built
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.spec = spec or probe_env(cfg.env_id, **cfg.env_options())
        torch.set_num_threads(cfg.torch_threads)
        # a process-wide CPU flag: close() puts back what the caller had
        self._flushed_before = denormals_flushed()
        torch.set_flush_denormal(cfg.flush_denormal)
        seed_everything(cfg.seed)
        algo_cls = REGISTRY[cfg.algo]
        self.agent = algo_cls.build_agent(self.spec, cfg)
        self.algo: Algorithm = algo_cls(cfg, self.agent)
        self.collector = self.algo.make_collector(cfg.env_id, self.spec)
        self.evaluator = Evaluator(
            cfg.env_id, self.spec, cfg.eval_episodes, cfg.seed, **cfg.env_options()
        )
        self.progress: dict[str, Any] = {
            "env_steps": 0,
            "updates": 0,
            "time": 0.0,
            "best_eval": -float("inf"),
            "next_eval": cfg.eval_every or cfg.total_steps,
            "next_checkpoint": cfg.checkpoint_every or cfg.total_steps,
        }
        self.stop_requested = False  # set by a signal handler: checkpoint and return

    def request_stop(self) -> None:
        """Ask ``train`` to stop after the current update, saving a checkpoint first
        (safe to call from a signal handler)."""
        self.stop_requested = True

    # --- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, metrics_rows: int) -> None:
        state = {
            "agent": self.agent.state_dict(),
            "algo": self.algo.state_dict(),
            "collector": self.collector.state_dict(),
            "rng": rng_state(),
            "progress": dict(self.progress),
            "metrics_rows": metrics_rows,
            "meta": {"algo": self.cfg.algo, "env_id": self.cfg.env_id},
        }
        rundir.save_checkpoint(self.run_dir, state)

    def load_checkpoint(self) -> int:
        """Restore the checkpoint of ``run_dir``; a foreign, damaged or other-run checkpoint
        is one ``ConfigError`` line naming the file."""
        state = rundir.load_checkpoint(self.run_dir)
        if isinstance(self.agent, ActorCritic) and is_linear_layout(state["agent"]):
            upgrade_linear_layout(state)
        rundir.check_checkpoint(self.run_dir, state, self.cfg, self.agent.state_dict())
        try:
            self.agent.load_state_dict(state["agent"])
            self.algo.load_state_dict(state["algo"])
            self.collector.load_state_dict(state["collector"])
            set_rng_state(state["rng"])
            metrics_rows = int(state["metrics_rows"])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
            path = self.run_dir / rundir.CHECKPOINT
            what = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"cannot restore {path}: {what}") from None
        self.progress.update(state["progress"])  # in place: train() holds a reference
        return metrics_rows

    # --- evaluation --------------------------------------------------------------------------
    def obs_normalizer(self) -> ObsNormalizer:
        return self.collector.obs_norm

    def evaluate(self) -> dict:
        returns, lengths = self.evaluator.run(self.agent, self.obs_normalizer())
        return summary(returns, lengths)

    def save_model(self, name: str) -> None:
        meta = {"algo": self.cfg.algo, "env_id": self.cfg.env_id, "env_steps": self.env_steps}
        rms = self.obs_normalizer().rms.state_dict()
        rundir.save_model(self.run_dir / name, self.agent, rms, meta)

    @property
    def env_steps(self) -> int:
        return int(self.progress["env_steps"])

    # --- the loop ----------------------------------------------------------------------------
    def train(
        self, *, resume: bool = False, show_progress: bool = True, stop_after: int | None = None
    ) -> dict | None:
        """Run to ``total_steps``; returns the final eval summary.

        ``stop_after`` ends the session after that many updates without
        finishing the run (what a kill right after a checkpoint leaves).
        """
        cfg, p = self.cfg, self.progress
        self.run_dir.mkdir(parents=True, exist_ok=True)
        keep = self.load_checkpoint() if resume else 0
        rundir.write_config(self.run_dir, cfg)
        log = rundir.MetricsLog(self.run_dir, keep_rows=keep)
        trackers = Trackers(self.run_dir, cfg.report_to, self.env_steps if resume else None)
        bar = tqdm(
            total=cfg.total_steps,
            initial=min(self.env_steps, cfg.total_steps),
            unit="step",
            disable=not show_progress,
            desc=f"{cfg.algo} {cfg.env_id} s{cfg.seed}",
            dynamic_ncols=True,
        )
        session_updates, saved_at = 0, p["env_steps"]
        try:
            while p["env_steps"] < cfg.total_steps:
                if stop_after is not None and session_updates >= stop_after:
                    return None
                if self.stop_requested:
                    self._stop(len(log.rows), checkpoint=p["env_steps"] > saved_at)
                    return None
                row = self.update_once()
                log.log(row)
                trackers.log(row)
                session_updates += 1
                bar.update(min(row["env_steps"], cfg.total_steps) - bar.n)
                bar.set_postfix_str(_postfix(row, p["best_eval"]), refresh=False)
                done = p["env_steps"] >= cfg.total_steps
                if done or p["env_steps"] >= p["next_checkpoint"]:
                    while p["next_checkpoint"] <= p["env_steps"]:
                        p["next_checkpoint"] += cfg.checkpoint_every or cfg.total_steps
                    self.save_checkpoint(len(log.rows))
                    saved_at = p["env_steps"]
        finally:
            bar.close()
            log.close()
            trackers.close()
        return self.finish(log.rows)

    def _stop(self, metrics_rows: int, *, checkpoint: bool) -> None:
        """End the session on request, saving what was learnt since the last checkpoint."""
        pause = getattr(self.collector, "pause", None)  # A3C: let the workers stand still
        if pause is not None:
            pause()
        if checkpoint:
            self.save_checkpoint(metrics_rows)

    def update_once(self) -> dict[str, Any]:
        """Collect one batch, learn from it, evaluate if due; returns the metrics row."""
        cfg, p = self.cfg, self.progress
        left = 1.0 - p["env_steps"] / cfg.total_steps
        lr = cfg.learning_rate * left if cfg.anneal_lr else cfg.learning_rate
        self.algo.set_lr(lr)
        t0 = time.perf_counter()
        batch = self.collector.collect()
        metrics = self.algo.update(batch, left)
        dt = time.perf_counter() - t0
        p["env_steps"] += batch.steps
        p["updates"] += 1
        p["time"] += dt
        row: dict[str, Any] = {
            "update": p["updates"],
            "env_steps": p["env_steps"],
            ELAPSED: round(p["time"], 4),
            STEPS_PER_S: round(batch.steps / dt, 1),
            "lr": lr,
            **metrics,
        }
        episodes = self.collector.stats.pop()
        if episodes:
            row[TRAIN_RETURN] = float(np.mean([r for r, _ in episodes]))
            row["train/episode_length"] = float(np.mean([n for _, n in episodes]))
            row["train/episodes"] = len(episodes)
        if p["env_steps"] >= p["next_eval"] or p["env_steps"] >= cfg.total_steps:
            while p["next_eval"] <= p["env_steps"]:
                p["next_eval"] += cfg.eval_every or cfg.total_steps
            t1 = time.perf_counter()
            ev = self.evaluate()
            row.update({EVAL_RETURN: ev["mean_return"], EVAL_STD: ev["std_return"]})
            if ev["mean_return"] >= p["best_eval"]:
                p["best_eval"] = ev["mean_return"]
                self.save_model(rundir.MODEL_BEST)
            row["time/eval"] = round(time.perf_counter() - t1, 4)
        return row

    def finish(self, rows: list[dict[str, Any]]) -> dict:
        """Final model, eval.json, CSV and curve (also rebuilt when resuming a finished run)."""
        self.save_model(rundir.MODEL_FINAL)
        result = self.evaluate()
        result.update(
            env_steps=self.env_steps,
            algo=self.cfg.algo,
            env_id=self.cfg.env_id,
            seed=self.cfg.seed,
            model=rundir.MODEL_FINAL,
            best_eval_return=self.progress["best_eval"],
            train_time_s=round(self.progress["time"], 2),
        )
        rundir.write_eval(self.run_dir, result)
        rundir.write_csv(self.run_dir, rows)
        rundir.plot_curve(self.run_dir, rows, f"{self.cfg.algo.upper()} on {self.cfg.env_id}")
        return result

    def close(self) -> None:
        self.collector.close()
        self.evaluator.close()
        torch.set_flush_denormal(self._flushed_before)


def _postfix(row: dict[str, Any], best: float) -> str:
    parts = [f"sps={row[STEPS_PER_S]:.0f}"]
    if TRAIN_RETURN in row:
        parts.append(f"ret={row[TRAIN_RETURN]:.1f}")
    if EVAL_RETURN in row:
        parts.append(f"eval={row[EVAL_RETURN]:.1f}")
    if best > -float("inf"):
        parts.append(f"best={best:.1f}")
    return " ".join(parts)


def upgrade_linear_layout(state: dict) -> None:
    """A checkpoint of an :class:`ActorCritic` saved before its weights were stored (in, out),
    brought to today's layout in place: the network's weights and every optimiser's moments
    of them transposed (the algorithms that train one keep its optimiser under ``optimizer``),
    and the actor's and critic's optimiser groups merged where they had the same learning
    rate (``param_groups``: one group then; the parameters keep their order)."""
    state["agent"] = upgrade_state_dict(state["agent"])
    algo = state.get("algo")
    if isinstance(algo, dict) and isinstance(algo.get("optimizer"), dict):
        opt = upgrade_optimizer_state(algo["optimizer"])
        groups = opt.get("param_groups", [])
        if len(groups) == 2 and all(g.get("lr_ratio") == 1.0 for g in groups):
            merged = {**groups[0], "params": [*groups[0]["params"], *groups[1]["params"]]}
            opt = {**opt, "param_groups": [merged]}
        algo["optimizer"] = opt


def denormals_flushed() -> bool:
    """Whether this thread computes with subnormal floats as zero (``torch.set_flush_denormal``
    has no getter): 2 * 1e-40 is a subnormal float32, 0 when they are flushed."""
    return bool((torch.tensor([1e-40]) * 2).item() == 0.0)
