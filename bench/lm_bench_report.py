"""Tables, target ratios and the reward-vs-KL plot of bench/lm_vs_trl.py's results."""

from __future__ import annotations

import statistics
from pathlib import Path

# (ours, theirs, target ratio of completions/s: issue 16's)
TARGETS = (
    ("ours-ppo", "trl112-ppo", 3.0),
    ("ours-ppo-critic", "trl112-ppo", None),  # the same four-model layout as TRL's
    ("ours-rloo", "trl116-rloo", 1.5),
    ("ours-grpo", "trl116-grpo", 1.5),
    ("ours-grpo", "trl116-grpo-b0", None),  # TRL's default beta=0: informative only
)
LABELS = {
    "ours-ppo": "ours PPO (value head)",
    "ours-ppo-critic": "ours PPO (separate critic from the RM)",
    "ours-ppo-critic[scaled]": "ours PPO (separate critic from the RM, in the scores' units)",
    "ours-rloo": "ours RLOO (k=4)",
    "ours-grpo": "ours GRPO (k=4)",
    "trl112-ppo": "TRL 1.12 PPO (separate value + reward models)",
    "trl116-rloo": "TRL 1.16 RLOO (k=4)",
    "trl116-grpo": "TRL 1.16 GRPO (k=4)",
    "trl116-grpo-b0": "TRL 1.16 GRPO (k=4, beta=0: no reference model)",
}

SPEED_MODELS = {
    "random": "random-init GPT-2 4 x 128 and random-init reward model",
    "sft": "the offline sentiment SFT policy and its learned reward model",
}

# one colour per algorithm: ours solid, TRL dashed
COLORS = {
    "ours-ppo": "C0",
    "trl112-ppo": "C0",
    "ours-ppo-critic": "C4",
    "ours-rloo": "C1",
    "trl116-rloo": "C1",
    "ours-grpo": "C2",
    "trl116-grpo": "C2",
}


def _order(name: str) -> int:
    return list(LABELS).index(name) if name in LABELS else len(LABELS)


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def speed_table(runs: dict) -> list[str]:
    lines = [
        "| trainer | s/step | completions/s | generated tokens/s | tokens / completion "
        "| peak RSS MB | ours: generate / logp+ref fwd / reward / update s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(runs, key=_order):
        rows = runs[name]
        phases = ""
        if all("phases" in r for r in rows):
            ph = {k: statistics.median(r["phases"][k] for r in rows) for k in rows[0]["phases"]}
            phases = " / ".join(f"{v:.2f}" for v in ph.values())
        lines.append(
            f"| {LABELS.get(name, name)} | {_median(rows, 's_per_step'):.2f} "
            f"| {_median(rows, 'completions_per_s'):.1f} | {_median(rows, 'tokens_per_s'):.0f} "
            f"| {_tokens_per_completion(rows):.1f} | {_median(rows, 'peak_rss_mb'):.0f} "
            f"| {phases} |"
        )
    return lines


def _tokens_per_completion(rows: list[dict]) -> float:
    """Mean response length (EOS included where a response stopped), from the rates."""
    return statistics.median(r["tokens_per_s"] / r["completions_per_s"] for r in rows)


def ratio_lines(runs: dict) -> list[str]:
    lines = [
        "| ours vs theirs | completions/s ratio | target | met | peak RSS ratio |",
        "|---|---|---|---|---|",
    ]
    for ours, theirs, target in TARGETS:
        if ours not in runs or theirs not in runs:
            continue
        speed = _median(runs[ours], "completions_per_s") / _median(
            runs[theirs], "completions_per_s"
        )
        rss = _median(runs[ours], "peak_rss_mb") / _median(runs[theirs], "peak_rss_mb")
        met = "-" if target is None else ("yes" if speed >= target else "**no**")
        tgt = "-" if target is None else f">= {target}x"
        lines.append(f"| {ours} / {theirs} | {speed:.2f}x | {tgt} | {met} | {rss:.2f} |")
    return lines


def _curves(learn: dict) -> dict[str, list[dict]]:
    """Per trainer, the evaluation points averaged over seeds (by step)."""
    by_name: dict[str, list[list[dict]]] = {}
    for key, run in learn.items():
        by_name.setdefault(key.split("/")[0], []).append(run["evals"])
    out = {}
    for name, seeds in by_name.items():
        steps = sorted({e["step"] for evals in seeds for e in evals})
        out[name] = [
            {
                "step": s,
                **{
                    k: statistics.fmean(e[k] for evals in seeds for e in evals if e["step"] == s)
                    for k in ("proxy", "gold", "gold_positive", "kl")
                },
            }
            for s in steps
        ]
    return out


def gold_at_kl(curve: list[dict], kl: float) -> float | None:
    """Gold score on a curve at a given KL (linear interpolation in KL; None outside it)."""
    pts = sorted((e["kl"], e["gold"]) for e in curve)
    for (k0, g0), (k1, g1) in zip(pts, pts[1:]):
        if k0 <= kl <= k1:
            return g0 if k1 == k0 else g0 + (g1 - g0) * (kl - k0) / (k1 - k0)
    return None


FRONTIER_KLS = (2.0, 4.0, 6.0, 8.0)


def frontier_lines(learn: dict, kls: tuple[float, ...] = FRONTIER_KLS) -> list[str]:
    """Gold at fixed KLs, each seed's curve read on its own (linear in KL between its saved
    checkpoints), then the mean and min..max over the seeds that reach that KL: a curve that
    stops short of a KL has no value there (n < seeds)."""
    by_name: dict[str, list[list[dict]]] = {}
    for key, run in learn.items():
        by_name.setdefault(key.split("/")[0], []).append(run["evals"])
    head = " | ".join(f"gold at KL {k:g}" for k in kls)
    lines = [f"| trainer | seeds | {head} |", "|---|---|" + "---|" * len(kls)]
    for name in sorted(by_name, key=_order):
        cells = []
        for k in kls:
            vals = [v for evals in by_name[name] if (v := gold_at_kl(evals, k)) is not None]
            cells.append(
                f"{statistics.fmean(vals):+.3f} ({min(vals):+.3f}..{max(vals):+.3f}, n={len(vals)})"
                if vals
                else "-"
            )
        lines.append(f"| {LABELS.get(name, name)} | {len(by_name[name])} | {' | '.join(cells)} |")
    return lines


def frontier_plot(learn: dict, path: Path, names: list[str] | None = None) -> None:
    """Gold against KL with seed bands: each seed's curve read at a grid of KLs (as in
    :func:`frontier_lines`); the line is the mean over the seeds that reach a KL, the band
    their min..max, drawn where at least two seeds reach it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name: dict[str, list[list[dict]]] = {}
    for key, run in learn.items():
        by_name.setdefault(key.split("/")[0], []).append(run["evals"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = [i * 0.25 for i in range(0, 49)]  # 0..12 nats
    for i, name in enumerate(sorted(by_name, key=_order)):
        if names and name not in names:
            continue
        xs, mean, low, high = [], [], [], []
        for k in grid:
            vals = [v for evals in by_name[name] if (v := gold_at_kl(evals, k)) is not None]
            if len(vals) >= min(2, len(by_name[name])):
                xs.append(k)
                mean.append(statistics.fmean(vals))
                low.append(min(vals))
                high.append(max(vals))
        colour = "black" if name.startswith("trl") else f"C{i}"
        style = "--" if name.startswith("trl") else "-"
        label = f"{LABELS.get(name, name)} ({len(by_name[name])} seeds)"
        ax.plot(xs, mean, style, color=colour, label=label)
        ax.fill_between(xs, low, high, color=colour, alpha=0.12)
    ax.set(xlabel="KL to the SFT reference (nats / sequence)", ylabel="gold score (VADER)")
    ax.set_title("Gold vs KL, held-out prompts: seed mean, band = min..max over seeds")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learn_table(learn: dict) -> list[str]:
    curves = _curves(learn)
    lines = [
        "| trainer | step | proxy reward | gold (VADER) | gold positive | KL to ref (nats/seq) |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(curves, key=_order):
        curve = curves[name]
        finals = [run["evals"][-1] for key, run in learn.items() if key.split("/")[0] == name]
        for e in (curve[0], curve[-1]):
            spread = ""
            if e is curve[-1] and len(finals) > 1:
                golds, kls = [f["gold"] for f in finals], [f["kl"] for f in finals]
                spread = (
                    f" ({len(finals)} seeds; gold {min(golds):+.3f}..{max(golds):+.3f}, "
                    f"KL {min(kls):.2f}..{max(kls):.2f})"
                )
            lines.append(
                f"| {LABELS.get(name, name)} | {e['step']}{spread} | {e['proxy']:+.3f} "
                f"| {e['gold']:+.3f} | {e['gold_positive']:.0%} | {e['kl']:.2f} |"
            )
    lines += [
        "",
        "| ours vs theirs | common KL range (nats/seq) | gold at its top, ours / theirs "
        "| gold difference (ours - theirs) at 25 / 50 / 75 / 100% of the range |",
        "|---|---|---|---|",
    ]
    for ours, theirs, _ in TARGETS:
        if ours in curves and theirs in curves:
            top = min(max(e["kl"] for e in curves[ours]), max(e["kl"] for e in curves[theirs]))
            a, b = gold_at_kl(curves[ours], top), gold_at_kl(curves[theirs], top)
            diffs = [
                gold_at_kl(curves[ours], f * top) - gold_at_kl(curves[theirs], f * top)
                for f in (0.25, 0.5, 0.75, 1.0)
            ]
            lines.append(
                f"| {ours} / {theirs} | 0-{top:.2f} | {a:+.3f} / {b:+.3f} "
                f"| {' / '.join(f'{d:+.3f}' for d in diffs)} |"
            )
    return lines


def plot(learn: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(learn)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in sorted(curves, key=_order):
        curve = curves[name]
        style = "-" if name.startswith("ours") else "--"
        kl = [e["kl"] for e in curve]
        for ax, key in zip(axes, ("proxy", "gold")):
            ax.plot(
                kl,
                [e[key] for e in curve],
                style,
                marker="o" if name.startswith("ours") else "s",
                color=COLORS.get(name),
                label=LABELS.get(name, name),
            )
    axes[0].set(xlabel="KL to the SFT reference (nats / sequence)", ylabel="proxy reward (RM)")
    axes[1].set(xlabel="KL to the SFT reference (nats / sequence)", ylabel="gold score (VADER)")
    axes[0].set_title("learned reward vs KL")
    axes[1].set_title("gold score vs KL")
    axes[1].legend(fontsize=7, handlelength=3.5)
    fig.suptitle("Offline sentiment task, held-out prompts, checkpoints every few steps")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict, plot_path: Path) -> str:
    """Markdown tables (printed by the benchmark) and the plot, from the results dict."""
    out = []
    machines = results.get("machine", {})
    if "command" in machines:  # one part only (older results)
        machines = {"run": machines}
    for part, m in machines.items():
        out.append(
            f"{part}: {m['date']}, {m['cpus']} CPUs, {m['threads']} threads, `{m['command']}`"
        )
    runs = results.get("speed_runs")
    if runs:
        n = len(next(iter(runs.values())))
        versions = {k: v for r in runs.values() for k, v in r[0]["versions"].items()}
        model = results.get("speed_model", "random")
        out += [
            "",
            f"Speed ({SPEED_MODELS.get(model, model)}), medians over {n} interleaved runs:",
            "",
            *speed_table(runs),
        ]
        out += ["", *ratio_lines(runs)]
        trl112 = runs.get("trl112-ppo", [{}])[0].get("versions")
        out += ["", f"versions (project venv): {versions}", f"versions (TRL 1.12 venv): {trl112}"]
    if results.get("learn"):
        out += ["", "Sentiment task, held-out evaluation:", "", *learn_table(results["learn"])]
        out += ["", "Gold at equal KL, per seed:", "", *frontier_lines(results["learn"])]
        plot(results["learn"], plot_path)
        out += ["", f"plot: {plot_path}"]
    return "\n".join(out)
