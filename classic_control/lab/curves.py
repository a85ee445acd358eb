"""Experiments 3 and 4: multi-seed learning curves, run by the ``compare`` sweep.

One-step actor-critic against REINFORCE and A2C on CartPole, and PPO with
the adaptive KL penalty beside PPO-clip on CartPole and Pendulum: every run
uses its algorithm's bundled preset with the budget replaced, and the same
deterministic evaluation protocol; the compare report (IQM, bootstrap
intervals, curves with seed bands) of each env is written in ``out/<env>/report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compare import records, report
from ..compare.sweep import RunSpec, run_sweep
from ..metrics import EVAL_RETURN


@dataclass
class CurveSettings:
    algos: tuple[str, ...]
    steps: dict[str, int]  # env id -> env-step budget of every run on it
    seeds: int = 10
    eval_every: int = 2000
    eval_episodes: int = 10
    jobs: int = 1


ACTOR_CRITIC = CurveSettings(
    algos=("actor_critic", "reinforce", "a2c"), steps={"CartPole-v1": 20_000}
)
KL_PENALTY = CurveSettings(
    algos=("ppo", "ppo_kl"),
    steps={"CartPole-v1": 50_000, "Pendulum-v1": 100_000},
    seeds=3,
    eval_every=5000,
)


def specs(s: CurveSettings, env_id: str) -> list[RunSpec]:
    """Every run on one env, seed-major (an interrupted sweep stays balanced)."""
    return [
        RunSpec(algo, env_id, seed, s.steps[env_id], s.eval_every, s.eval_episodes)
        for seed in range(s.seeds)
        for algo in s.algos
    ]


def protocol(s: CurveSettings, env_id: str) -> dict:
    return {"steps": s.steps[env_id], "eval_every": s.eval_every, "eval_episodes": s.eval_episodes}


def check(s: CurveSettings, out: Path) -> None:
    """Refuse (ConfigError) to add runs of another budget or eval schedule to a folder."""
    for env_id in s.steps:
        records.check_manifest(out / env_id, protocol(s, env_id))


def run(s: CurveSettings, out: Path) -> dict:
    """One resumable sweep (and compare report) per env in ``out/<env>``; returns the summary."""
    check(s, out)
    summary: dict = {}
    failed: list[str] = []
    for env_id in s.steps:
        folder = out / env_id
        folder.mkdir(parents=True, exist_ok=True)
        grid = {"algos": list(s.algos), "envs": [env_id], "seeds": list(range(s.seeds))}
        records.update_manifest(folder, protocol(s, env_id), grid)
        failed += run_sweep(specs(s, env_id), folder, jobs=s.jobs).failed
        report.write_report(folder)
        by_algo = report.group(records.load_records(folder))[env_id]
        summary[env_id] = {algo: _summary(runs, env_id) for algo, runs in by_algo.items()}
    settings = {k: getattr(s, k) for k in ("steps", "seeds", "eval_every", "eval_episodes")}
    return {
        "settings": {"algos": list(s.algos), **settings},
        "failed_runs": failed,
        "results": summary,
    }


def _summary(runs: list[dict], env_id: str) -> dict:
    sm = report.summarize(runs, env_id)
    evals = [np.array([c[EVAL_RETURN] for c in r["curve"]]) for r in runs]
    return {
        "final_std_over_seeds": float(np.std(sm["finals"], ddof=1)) if len(runs) > 1 else 0.0,
        # within a run: how much the deterministic eval moves from one evaluation to the next
        "mean_abs_eval_change": float(
            np.mean([np.abs(np.diff(e)).mean() if len(e) > 1 else 0.0 for e in evals])
        ),
        "seeds": sm["seeds"],
        "final_eval": sm["finals"],
        "final_mean_ci": list(sm["mean"]),
        "final_iqm_ci": list(sm["iqm"]),
        "threshold": sm["threshold"],
        "reached_threshold": sm["reached"],
        "median_steps_to_threshold": sm["median_steps"],
        "median_train_s": sm["median_train_s"],
        "budget": sm["budget"],
    }
