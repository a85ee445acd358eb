"""The report of a results folder, rebuilt from its records alone: Markdown table and PNG plots.

Per (env, algo): final eval return (mean and IQM with 95% bootstrap CIs),
the fraction of seeds that reached the env's threshold (95% Wilson
interval), the median steps-to-threshold (a seed that never reached it
counts as infinite), training wall-clock and env steps per second.
Curves are read on the eval grid: at each multiple of ``eval_every`` a run
contributes its first evaluation at or after that step (at most one batch
later), so every point is a deterministic evaluation, never a training return.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_pg.utils.io import atomic_write_text

from ..config import ConfigError
from ..metrics import ELAPSED, EVAL_RETURN
from . import records, stats

REPORT_DIR = "report"


def group(recs: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """env -> algo -> records sorted by seed (algos in a stable order)."""
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(recs, key=lambda r: (r["env_id"], _algo_order(r["algo"]), r["seed"])):
        out[r["env_id"]][r["algo"]].append(r)
    return out


def _algo_order(algo: str) -> tuple[int, str]:
    order = ["reinforce", "a2c", "a3c", "ppo", "trpo"]
    base = algo.removeprefix("sb3-")
    return (order.index(base) if base in order else len(order), algo)


def grid(recs: list[dict[str, Any]]) -> np.ndarray:
    p = recs[0]["protocol"]
    steps, every = p["steps"], p["eval_every"] or p["steps"]
    points = list(range(every, steps + 1, every))
    if not points or points[-1] != steps:
        points.append(steps)
    return np.array(points)


def on_grid(rec: dict[str, Any], points: np.ndarray, key: str = EVAL_RETURN) -> np.ndarray:
    """The run's first evaluation at or after each grid point (NaN if it has none)."""
    steps = np.array([c["env_steps"] for c in rec["curve"]])
    values = np.array([c[key] for c in rec["curve"]], dtype=np.float64)
    idx = np.searchsorted(steps, points, side="left")
    out = np.full(len(points), np.nan)
    ok = idx < len(steps)
    out[ok] = values[idx[ok]]
    return out


def summarize(recs: list[dict[str, Any]], env_id: str) -> dict[str, Any]:
    finals = [r["final_eval"]["mean_return"] for r in recs]
    thr = records.threshold(env_id)
    to_thr: list[int | None] = []
    if thr is not None:
        for r in recs:
            steps = [c["env_steps"] for c in r["curve"]]
            to_thr.append(
                stats.steps_to_threshold(steps, [c[EVAL_RETURN] for c in r["curve"]], thr)
            )
    reached = sum(s is not None for s in to_thr)
    return {
        "seeds": [r["seed"] for r in recs],
        "finals": finals,
        "mean": stats.bootstrap_ci(finals, stats.mean),
        "iqm": stats.bootstrap_ci(finals, stats.iqm),
        "threshold": thr,
        "steps_to_threshold": to_thr,
        "reached": reached,
        "reached_ci": stats.wilson_interval(reached, len(recs)) if thr is not None else None,
        "median_steps": stats.censored_median(to_thr) if thr is not None else None,
        "median_train_s": float(np.median([r["train_time_s"] for r in recs])),
        "median_sps": float(np.median([r["steps_per_s"] for r in recs])),
        "budget": recs[0]["protocol"]["steps"],
        "cores": max(_cores(r) for r in recs),
    }


def _cores(rec: dict[str, Any]) -> int:
    """CPU cores a run kept busy: A3C's workers, one otherwise."""
    return int(rec["config"].get("num_workers", 1)) if rec["algo"] == "a3c" else 1


def _ci(t: tuple[float, float, float]) -> str:
    return f"{t[0]:.1f} [{t[1]:.1f}, {t[2]:.1f}]"


def table(env_id: str, summaries: dict[str, dict[str, Any]]) -> str:
    thr = next(iter(summaries.values()))["threshold"]
    t = "n/a" if thr is None else f"{thr:g}"
    lines = [
        f"| algo | seeds | final return, mean [95% CI] | final return, IQM [95% CI] "
        f"| reached {t} | median steps to {t} | median train time (s) | median env steps/s | cores |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for algo, s in summaries.items():
        n = len(s["seeds"])
        if thr is None:
            reached = steps = "n/a"
        else:
            lo, hi = s["reached_ci"]
            reached = f"{s['reached']}/{n} [{lo:.2f}, {hi:.2f}]"
            m = s["median_steps"]
            steps = f"> {s['budget']:,}" if m is None else f"{m:,.0f}"
        lines.append(
            f"| {algo} | {n} | {_ci(s['mean'])} | {_ci(s['iqm'])} | {reached} | {steps} "
            f"| {s['median_train_s']:.1f} | {s['median_sps']:,.0f} | {s['cores']} |"
        )
    return "\n".join(lines)


def _provenance(recs: list[dict[str, Any]]) -> list[str]:
    def distinct(f) -> str:
        return "; ".join(sorted({str(f(r)) for r in recs}))

    return [
        f"- package versions: {distinct(lambda r: r.get('versions'))}",
        f"- git: {distinct(lambda r: r.get('git'))}",
        f"- machine: {distinct(lambda r: (r.get('machine') or {}).get('platform'))}, "
        f"{distinct(lambda r: (r.get('machine') or {}).get('cpus'))} CPUs",
    ]


def markdown(recs: list[dict[str, Any]], plots: dict[str, list[str]]) -> str:
    p = recs[0]["protocol"]
    lines = [
        "# classic_control compare report",
        "",
        f"Protocol shared by every run: {p['steps']:,} env steps; every {p['eval_every']:,} "
        f"steps and at the end, {p['eval_episodes']} episodes of the deterministic policy "
        "on separate eval envs with fixed reset seeds. Final return = the evaluation at the "
        "end of the budget.",
        "",
        "Across seeds: mean and IQM (25%-trimmed mean) with 95% percentile-bootstrap CIs "
        f"({stats.N_BOOT:,} resamples); seeds reaching the threshold with a 95% Wilson "
        "interval; median steps to threshold counts a seed that never reached it as "
        "infinite ('> budget' when half or more never did). Train time = collection and "
        "updates, evaluation excluded; one torch thread per process; A3C runs one process "
        "per worker ('cores' column), every other method one.",
        "",
    ]
    for env_id, by_algo in group(recs).items():
        sums = {algo: summarize(rs, env_id) for algo, rs in by_algo.items()}
        lines += [f"## {env_id}", "", table(env_id, sums), "", "Final return per seed:", ""]
        for algo, s in sums.items():
            vals = ", ".join(f"s{k}: {v:.1f}" for k, v in zip(s["seeds"], s["finals"]))
            lines.append(f"- {algo}: {vals}")
        lines.append("")
        lines += [f"![{name}]({name})" for name in plots.get(env_id, [])]
        lines.append("")
    lines += ["## Provenance", "", *_provenance(recs), ""]
    return "\n".join(lines)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def plot_env(env_id: str, by_algo: dict[str, list[dict[str, Any]]], out: Path) -> list[str]:
    """The env's three plots (return vs steps, vs time, steps to threshold); their names."""
    import matplotlib

    matplotlib.use("Agg")
    bases = list(dict.fromkeys(a.removeprefix("sb3-") for a in by_algo))
    colors = {a: f"C{bases.index(a.removeprefix('sb3-'))}" for a in by_algo}
    styles = {a: "--" if a.startswith("sb3-") else "-" for a in by_algo}  # SB3: dashed
    names = [f"curves_{env_id}.png", f"steps_to_threshold_{env_id}.png", f"wallclock_{env_id}.png"]
    _plot_curves(env_id, by_algo, colors, styles, out / names[0], out / names[2])
    _plot_steps_to_threshold(env_id, by_algo, colors, out / names[1])
    return names


def _plot_curves(
    env_id: str,
    by_algo: dict[str, list[dict[str, Any]]],
    colors: dict[str, str],
    styles: dict[str, str],
    steps_path: Path,
    time_path: Path,
) -> None:
    """Mean eval return with its bootstrap band against env steps, and against train time."""
    import matplotlib.pyplot as plt

    thr = records.threshold(env_id)
    fig1, ax1 = plt.subplots(figsize=(7, 4.2), dpi=110)
    fig3, ax3 = plt.subplots(figsize=(7, 4.2), dpi=110)
    for algo, recs in by_algo.items():
        points = grid(recs)
        ret = np.stack([on_grid(r, points) for r in recs])
        secs = np.stack([on_grid(r, points, ELAPSED) for r in recs])
        m, lo, hi = stats.curve_band(ret)
        label = f"{algo} (n={len(recs)})"
        ax1.plot(points, m, color=colors[algo], ls=styles[algo], lw=1.8, label=label)
        ax1.fill_between(points, lo, hi, color=colors[algo], alpha=0.2, lw=0)
        ax3.plot(np.nanmedian(secs, 0), m, color=colors[algo], ls=styles[algo], lw=1.8, label=label)
    for ax, xlabel in ((ax1, "env steps"), (ax3, "median training wall-clock (s)")):
        if thr is not None:
            ax.axhline(thr, color="k", ls="--", lw=0.8, label=f"threshold {thr:g}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("eval return (deterministic)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    ax1.set_title(f"{env_id}: mean eval return, 95% bootstrap CI over seeds")
    ax3.set_title(f"{env_id}: mean eval return vs training time")
    _save(fig1, steps_path)
    _save(fig3, time_path)


def _plot_steps_to_threshold(
    env_id: str, by_algo: dict[str, list[dict[str, Any]]], colors: dict[str, str], path: Path
) -> None:
    """Each seed's env steps to the threshold, a cross for the seeds that never got there."""
    import matplotlib.pyplot as plt

    thr = records.threshold(env_id)
    fig2, ax2 = plt.subplots(figsize=(7, 0.6 + 0.5 * len(by_algo)), dpi=110)
    for y, (algo, recs) in enumerate(by_algo.items()):
        s = summarize(recs, env_id)
        budget = s["budget"]
        hit = [v for v in s["steps_to_threshold"] if v is not None]
        miss = len(s["steps_to_threshold"]) - len(hit)
        ax2.scatter(hit, [y] * len(hit), color=colors[algo], s=18, zorder=3)
        if miss:
            ax2.scatter([budget], [y], marker="x", color="k", s=30, zorder=3)
            ax2.annotate(
                f"{miss} not reached",
                (budget, y),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
            )
        if s["median_steps"] is not None:
            ax2.scatter([s["median_steps"]], [y], marker="|", color="k", s=300, zorder=4)
    ax2.set_yticks(range(len(by_algo)), list(by_algo))
    ax2.set_xlabel(
        f"env steps to first eval >= {thr:g} (dots: seeds, bar: median)"
        if thr is not None
        else "no threshold for this env"
    )
    ax2.set_xlim(0, None if not by_algo else max(grid(r)[-1] for r in by_algo.values()) * 1.12)
    ax2.grid(alpha=0.3, axis="x")
    fig2.tight_layout()
    _save(fig2, path)


def write_report(results: Path, out: Path | None = None) -> Path:
    """Rebuild ``report/`` (or ``out``) from the records of ``results``; returns report.md."""
    recs = records.load_records(Path(results))
    if not recs:
        raise ConfigError(f"{str(results)!r} has no finished runs yet (records/ is empty)")
    out = Path(out) if out is not None else Path(results) / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    plots = {env: plot_env(env, by_algo, out) for env, by_algo in group(recs).items()}
    path = out / "report.md"
    atomic_write_text(path, markdown(recs, plots))
    return path
