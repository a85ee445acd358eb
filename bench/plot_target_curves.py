"""Per-seed evaluation curves of the runs made by ``bench/classic_control_targets.py``.

One panel per target, one line per seed (its deterministic evaluations against
env steps), the threshold dashed and each finished seed's final evaluation
marked: a filled dot when it reaches the threshold, a cross when it does not.
Seeds still running are drawn thin and dotted up to where they are, so the
figure can be drawn while lanes run. Reads only the run folders' metrics.

    python bench/plot_target_curves.py results/offpolicy_targets \
        --targets td3-lunarlandercontinuous sac-lunarlandercontinuous \
        --out docs/img/offpolicy/curves_LunarLanderContinuous-v3.png
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classic_control_targets import TARGETS  # noqa: E402  (bench/ is on sys.path as the script's folder)

from classic_control import rundir  # noqa: E402
from classic_control.metrics import EVAL_RETURN  # noqa: E402
from rlhf_pg.utils.io import atomic_path  # noqa: E402


def seed_curves(target_dir: Path) -> list[dict]:
    """Each seed's eval curve, and its final record when the seed has finished."""
    out = []
    runs = [p for p in target_dir.glob("run_seed*") if re.fullmatch(r"run_seed\d+", p.name)]
    for run in sorted(runs, key=lambda p: int(p.name.removeprefix("run_seed"))):
        seed = int(run.name.removeprefix("run_seed"))
        if not (run / rundir.METRICS).exists():
            continue
        evals = [
            (r["env_steps"], r[EVAL_RETURN]) for r in rundir.read_metrics(run) if EVAL_RETURN in r
        ]
        record = target_dir / f"seed{seed}.json"
        final = json.loads(record.read_text()) if record.exists() else None
        out.append({"seed": seed, "evals": evals, "final": final})
    return out


def plot(results: Path, targets: list[str], path: Path) -> None:
    fig, axes = plt.subplots(
        1, len(targets), figsize=(6.2 * len(targets), 4.2), dpi=110, squeeze=False
    )
    for ax, name in zip(axes[0], targets):
        algo, env_id, budget, threshold, need = TARGETS[name]
        curves = seed_curves(results / name)
        finished = [c for c in curves if c["final"] is not None]
        hits = sum(c["final"]["reached"] for c in finished)
        for c in curves:
            steps, returns = zip(*c["evals"]) if c["evals"] else ((), ())
            color = f"C{c['seed'] % 10}"
            if c["final"] is None:  # still running: thin and dotted
                ax.plot(
                    steps, returns, color=color, lw=0.9, ls=":", label=f"seed {c['seed']} (running)"
                )
                continue
            ax.plot(steps, returns, color=color, lw=1.2, alpha=0.85, label=f"seed {c['seed']}")
            final = c["final"]["final_eval_mean"]
            marker = "o" if c["final"]["reached"] else "x"
            ax.scatter(
                [c["final"]["env_steps"]], [final], color=color, marker=marker, s=36, zorder=3
            )
        ax.axhline(threshold, color="k", ls="--", lw=0.8)
        ax.set_title(
            f"{algo.upper()} {env_id}: {hits} of {len(finished)} finished seeds >= {threshold:g}"
            + (f" (goal {need})" if need else ""),
            fontsize=9,
        )
        ax.set_xlim(0, budget * 1.03)
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return (10 deterministic episodes)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:  # a kill mid-write leaves the old figure whole
        fig.savefig(tmp, format="png")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="the --out folder of classic_control_targets.py")
    p.add_argument("--targets", nargs="+", required=True, choices=list(TARGETS))
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = p.parse_args()
    if not args.results.is_dir():
        p.error(f"results folder {args.results} does not exist")
    for name in args.targets:
        if not seed_curves(args.results / name):
            p.error(
                f"no run_seed* folder with metrics under {args.results / name}; run that target first"
            )
    plot(args.results, args.targets, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
