"""Table and plots of bench/rlhf_algorithms.py's saved runs (``<out>/runs/*.json``).

- ``table.md``: per algorithm, the final held-out gold score, proxy reward and KL to the SFT
  reference (mean over seeds, range in brackets), gold at equal KL (each seed's curve read at
  2 / 4 / 8 nats, then averaged; "-" where a seed's curve does not reach it), training seconds;
  then the over-optimisation run step by step.
- ``frontier.png`` gold vs KL, ``gold_vs_time.png`` gold vs training seconds,
  ``overoptimisation.png`` proxy and gold vs step at a low KL coefficient: seed means with a
  band from the lowest to the highest seed, on the x range every seed covers (a curve that
  comes back to an x it passed is read at its first pass), over each seed's measured points
  (faint dotted lines).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

LABELS = {
    "ppo": "PPO (value head)",
    "ppo-critic": "PPO (separate critic)",
    "reinforce": "REINFORCE (batch baseline)",
    "rloo": "RLOO (k=4)",
    "grpo": "GRPO (k=4)",
    "dr-grpo": "Dr. GRPO (k=4)",
    "dpo": "DPO (TRL, offline pairs)",
    "online-dpo": "online DPO (TRL, RM judge)",
}
KL_MARKS = (2.0, 4.0, 8.0)


def load_runs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def by_algorithm(runs: list[dict], kind: str) -> dict[str, list[dict]]:
    """Runs of one kind grouped by algorithm, in the LABELS order, seeds sorted."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        if run["kind"] == kind:
            groups.setdefault(run["algorithm"], []).append(run)
    order = list(LABELS)
    return {
        name: sorted(groups[name], key=lambda r: r["seed"])
        for name in sorted(groups, key=lambda n: order.index(n) if n in order else len(order))
    }


def read_at(evals: list[dict], x_key: str, x: float, y_key: str = "gold") -> float | None:
    """y on one run's curve at ``x`` (linear between evaluations; None outside the curve).
    The curve is walked in training order, so a KL that is passed twice reads the first."""
    pts = [(e[x_key], e[y_key]) for e in evals]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        lo, hi = min(x0, x1), max(x0, x1)
        if lo <= x <= hi:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def _spread(values: list[float], fmt: str) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"


def main_table(groups: dict[str, list[dict]]) -> list[str]:
    marks = " | ".join(f"gold at KL {k:g}" for k in KL_MARKS)
    lines = [
        f"| algorithm | seeds | steps | gold (VADER), final | proxy, final | KL to SFT, final "
        f"| {marks} | training s per run | s per step |",
        "|---|---|---|---|---|---|" + "---|" * len(KL_MARKS) + "---|---|",
    ]
    for name, runs in groups.items():
        final = [r["evals"][-1] for r in runs]
        at_kl = []
        for k in KL_MARKS:
            got = [read_at(r["evals"], "kl", k) for r in runs]
            at_kl.append("-" if None in got else f"{statistics.fmean(got):+.3f}")
        steps = [s for r in runs for s in r["step_seconds"]]
        lines.append(
            f"| {LABELS.get(name, name)} | {len(runs)} | {runs[0]['steps']} "
            f"| {_spread([e['gold'] for e in final], '+.3f')} "
            f"| {_spread([e['proxy'] for e in final], '+.2f')} "
            f"| {_spread([e['kl'] for e in final], '.2f')} | {' | '.join(at_kl)} "
            f"| {_spread([r['train_seconds'] for r in runs], '.0f')} "
            f"| {statistics.median(steps):.2f} |"
        )
    return lines


def overopt_table(groups: dict[str, list[dict]]) -> list[str]:
    lines = []
    for name, runs in groups.items():
        kl_coef = runs[0]["kl_coef"]
        lines += [
            f"Over-optimisation: {LABELS.get(name, name)}, KL coefficient {kl_coef:g}, "
            f"{runs[0]['steps']} steps, {len(runs)} seed(s) (mean; range in brackets):",
            "",
            "| step | proxy (held-out) | gold (VADER) | KL to SFT |",
            "|---|---|---|---|",
        ]
        steps = [e["step"] for e in runs[0]["evals"]]
        for i, step in enumerate(steps):
            rows = [r["evals"][i] for r in runs if len(r["evals"]) > i]
            lines.append(
                f"| {step} | {_spread([e['proxy'] for e in rows], '+.2f')} "
                f"| {_spread([e['gold'] for e in rows], '+.3f')} "
                f"| {_spread([e['kl'] for e in rows], '.2f')} |"
            )
        gold = [statistics.fmean(r["evals"][i]["gold"] for r in runs) for i in range(len(steps))]
        peak = int(np.argmax(gold))
        lines += [
            "",
            f"Seed-mean gold peaks at step {steps[peak]} ({gold[peak]:+.3f}) and ends at "
            f"{gold[-1]:+.3f} ({gold[-1] - gold[peak]:+.3f} from the peak).",
            "",
        ]
    return lines


def _band(runs: list[dict], x_key: str, y_key: str, n: int = 50):
    """x grid over the range every seed covers; seed mean, min and max of y on it."""
    lo = max(min(e[x_key] for e in r["evals"]) for r in runs)
    hi = min(max(e[x_key] for e in r["evals"]) for r in runs)
    if not hi > lo:
        return None
    grid = np.linspace(lo, hi, n)
    ys = np.array([[read_at(r["evals"], x_key, x, y_key) for x in grid] for r in runs], float)
    return grid, ys.mean(0), ys.min(0), ys.max(0)


def _plot_bands(ax, groups, x_key: str, y_key: str) -> None:
    for i, (name, runs) in enumerate(groups.items()):
        color = f"C{i}"
        for r in runs:  # each seed's evaluations as measured, faint (the band reads x once)
            ax.plot([e[x_key] for e in r["evals"]], [e[y_key] for e in r["evals"]],
                    ".:", color=color, alpha=0.35, linewidth=0.8, markersize=3)  # fmt: skip
        band = _band(runs, x_key, y_key)
        if band is None:  # one evaluation point only (or a degenerate range)
            ax.plot([r["evals"][-1][x_key] for r in runs], [r["evals"][-1][y_key] for r in runs],
                    "o", color=color, label=LABELS.get(name, name))  # fmt: skip
            continue
        x, mean, low, high = band
        ax.plot(x, mean, color=color, label=f"{LABELS.get(name, name)} ({len(runs)} seeds)")
        ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)


def write_plots(out: Path, main: dict, overopt: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for x_key, xlabel, fname in (
        ("kl", "KL to the SFT reference (nats / sequence, held-out prompts)", "frontier.png"),
        ("train_seconds", "training seconds (evaluations excluded)", "gold_vs_time.png"),
    ):
        if not main:
            break
        fig, ax = plt.subplots(figsize=(7.5, 5))
        _plot_bands(ax, main, x_key, "gold")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("gold score (VADER), held-out prompts")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        written.append(out / fname)
    if overopt:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, y_key, ylabel in (
            (axes[0], "proxy", "proxy reward (learned RM), held-out"),
            (axes[1], "gold", "gold score (VADER), held-out"),
        ):
            _plot_bands(ax, overopt, "step", y_key)
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        kl_coef = next(iter(overopt.values()))[0]["kl_coef"]
        fig.suptitle(f"reward over-optimisation at KL coefficient {kl_coef:g}")
        fig.tight_layout()
        fig.savefig(out / "overoptimisation.png", dpi=110)
        plt.close(fig)
        written.append(out / "overoptimisation.png")
    return written


def write_report(out: Path) -> str:
    """Write ``<out>/table.md`` and the plots; returns the markdown."""
    from rlhf_pg.utils.io import atomic_write_text

    runs = load_runs(out)
    main, overopt = by_algorithm(runs, "main"), by_algorithm(runs, "overopt")
    if not runs:
        return f"no finished runs in {out / 'runs'}"
    first = runs[0]
    b = first["budget"]
    lines = [
        f"Offline sentiment task; {first['machine']['date']}, {first['machine']['cpus']} CPUs, "
        f"{first['machine']['torch_threads']} torch threads, load average at the start "
        f"{first['machine']['load_avg_1min']:.1f}; {b['completions']} completions x "
        f"{b['response_length']} new tokens per step (DPO: {b['completions'] // 2} pairs), "
        f"learning rate {b['learning_rate']:g}, KL coefficient {b['kl_coef']:g}, "
        f"DPO beta {b['dpo_beta']:g}; evaluation on {b['eval_prompts']} held-out prompts.",
        "",
        *main_table(main),
        "",
        *overopt_table(overopt),
    ]
    plots = write_plots(out, main, overopt)
    lines.append("Plots: " + ", ".join(str(p) for p in plots))
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", text)
    return text
