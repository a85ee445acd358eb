"""Experiments 3 and 4: multi-seed learning curves, run by the ``compare`` sweep.

One-step actor-critic against REINFORCE and A2C on CartPole, and PPO with
the adaptive KL penalty beside PPO-clip on CartPole and Pendulum: every run
uses its algorithm's bundled preset with the budget replaced, and the same
deterministic evaluation protocol; the compare report (IQM, bootstrap
intervals, curves with seed bands) is written next to the lab's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..compare import records, report
from ..compare.sweep import RunSpec, run_sweep


@dataclass
class CurveSettings:
    algos: tuple[str, ...]
    steps: dict[str, int]  # env id -> env-step budget of every run on it
    seeds: int = 10
    eval_every: int = 2000
    eval_episodes: int = 10
    jobs: int = 1
    extra: dict = field(default_factory=dict)


ACTOR_CRITIC = CurveSettings(
    algos=("actor_critic", "reinforce", "a2c"), steps={"CartPole-v1": 20_000}
)
KL_PENALTY = CurveSettings(
    algos=("ppo", "ppo_kl"),
    steps={"CartPole-v1": 50_000, "Pendulum-v1": 100_000},
    seeds=3,
    eval_every=5000,
)


def specs(s: CurveSettings) -> list[RunSpec]:
    """Every run, seed-major (an interrupted sweep stays balanced across algorithms)."""
    return [
        RunSpec(algo, env, seed, steps, s.eval_every, s.eval_episodes)
        for seed in range(s.seeds)
        for env, steps in s.steps.items()
        for algo in s.algos
    ]


def run(s: CurveSettings, out: Path) -> dict:
    """Run (or finish) the sweep in ``out``, write its report; returns the lab's summary."""
    result = run_sweep(specs(s), out, jobs=s.jobs)
    report_path = report.write_report(out)
    recs = records.load_records(out)
    summary: dict = {}
    for env_id, by_algo in report.group(recs).items():
        summary[env_id] = {}
        for algo, runs in by_algo.items():
            sm = report.summarize(runs, env_id)
            summary[env_id][algo] = {
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
    return {
        "settings": {
            "algos": list(s.algos),
            "steps": s.steps,
            "seeds": s.seeds,
            "eval_every": s.eval_every,
            "eval_episodes": s.eval_episodes,
        },
        "failed_runs": result.failed,
        "report": str(report_path),
        "results": summary,
    }
