"""``runs/<name>/report.md``: what the pipeline did and whether it worked, with PNG plots.

The sentiment report (:func:`write_report`) shows the held-out figures before and after PPO
(gold score, share rated positive, proxy reward, KL to the reference), the stage timings,
fixed prompts with the SFT model's and the PPO policy's completions, and four plots: proxy
reward, gold score and KL over training, and gold score against KL.

The chat-arithmetic report (:func:`write_chat_report`) shows, for each estimator, the
held-out exact match of the SFT model and of the trained policy (greedy and sampled), the
KL to the SFT model, the greedy answers to fixed held-out questions, and the exact match
over training (``accuracy.png``).
"""

from __future__ import annotations

from pathlib import Path

from ..utils.io import atomic_path, atomic_write_text

PLOTS = {
    "proxy_reward.png": ("score/mean", "proxy", "proxy reward (reward model score)"),
    "gold_score.png": ("gold/mean", "gold_mean", "gold score (mean VADER compound)"),
    "kl.png": ("kl/seq", "kl_seq", "KL to reference (nats / sequence)"),
}


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(6, 4), dpi=100)


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_curve(history: list[dict], evals: list[dict], key: str, eval_key: str, label: str, path):
    """One metric over training steps: per-step training samples and held-out evaluations."""
    plt, fig, ax = _figure()
    steps = [h["step"] for h in history if h.get(key) is not None]
    ax.plot(steps, [h[key] for h in history if h.get(key) is not None], lw=1, label="training")
    points = [(e["step"], e[eval_key]) for e in evals if eval_key in e]
    if points:
        ax.plot(*zip(*points), "o-", label="held-out prompts")
    ax.set_xlabel("PPO step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(plt, fig, Path(path))


def plot_gold_vs_kl(history: list[dict], evals: list[dict], path) -> None:
    """Gold score against KL: how much true improvement each nat of divergence bought."""
    plt, fig, ax = _figure()
    rows = [h for h in history if h.get("gold/mean") is not None]
    scatter = ax.scatter(
        [h["kl/seq"] for h in rows],
        [h["gold/mean"] for h in rows],
        c=[h["step"] for h in rows],
        s=12,
        cmap="viridis",
        label="training batches",
    )
    points = [(e["kl_seq"], e["gold_mean"]) for e in evals if "gold_mean" in e]
    if points:
        ax.plot(*zip(*points), "o-", color="C3", label="held-out prompts")
    fig.colorbar(scatter, ax=ax, label="PPO step")
    ax.set_xlabel("KL to reference (nats / sequence)")
    ax.set_ylabel("gold score (mean VADER compound)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(plt, fig, Path(path))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip() or "(empty)"


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def render_markdown(summary: dict, results: dict, plots: list[str]) -> str:
    """The report's text (kept apart from the plotting so it is easy to test)."""
    before, after = results["evals"][0], results["evals"][-1]
    lines = [f"# {summary.get('title', 'RLHF pipeline report')}", ""]
    lines += [summary.get("intro", ""), ""] if summary.get("intro") else []
    lines += [
        "## Held-out results",
        "",
        "| metric | SFT (before PPO) | after PPO |",
        "|---|---|---|",
    ]
    names = {
        "gold_mean": "gold score, mean VADER compound",
        "gold_positive": "share rated positive (compound >= 0.05)",
        "proxy": "proxy reward (reward model)",
        "kl_seq": "KL to reference, nats / sequence",
        "response_length": "response length, tokens",
        "accuracy": "exact-match accuracy (greedy)",
        "accuracy_sampled": "exact-match accuracy (samples at the training temperature)",
    }
    for key, name in names.items():
        if key in before and key in after:
            lines.append(f"| {name} | {_fmt(before[key])} | {_fmt(after[key])} |")
    lines.append("")
    facts = summary.get("facts", {})
    if facts:
        lines += ["## Pipeline", "", "| item | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in facts.items()] + [""]
    lines += ["## Samples for fixed held-out prompts", ""]
    lines += ["| prompt | SFT model | after PPO |", "|---|---|---|"]
    for b, a in zip(before.get("samples", []), after.get("samples", [])):

        def show(row):
            tag = f" *(gold {row['gold']:+.2f})*" if "gold" in row else ""
            return _cell(row["completion"]) + tag

        lines.append(f"| {_cell(b['prompt'])} | {show(b)} | {show(a)} |")
    lines += ["", "## Plots", ""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, results: dict, summary: dict | None = None) -> Path:
    """Write the PNG plots and ``report.md`` into ``out_dir``; returns the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    history, evals = results["history"], results["evals"]
    plots = []
    for name, (key, eval_key, label) in PLOTS.items():
        if any(h.get(key) is not None for h in history):
            plot_curve(history, evals, key, eval_key, label, out / name)
            plots.append(name)
    if any(h.get("gold/mean") is not None for h in history):
        plot_gold_vs_kl(history, evals, out / "gold_vs_kl.png")
        plots.append("gold_vs_kl.png")
    report = out / "report.md"
    atomic_write_text(report, render_markdown(summary or {}, results, plots))
    return report


def plot_accuracy(runs: dict[str, dict], path) -> None:
    """Held-out exact match over RL steps, sampled (solid) and greedy (dashed), per run."""
    plt, fig, ax = _figure()
    for i, (name, results) in enumerate(runs.items()):
        steps = [e["step"] for e in results["evals"]]
        ax.plot(steps, [e["accuracy_sampled"] for e in results["evals"]], "o-", color=f"C{i}",
                label=f"{name}, sampled")  # fmt: skip
        ax.plot(steps, [e["accuracy"] for e in results["evals"]], "s--", color=f"C{i}",
                alpha=0.6, label=f"{name}, greedy")  # fmt: skip
    ax.set_xlabel("RL step")
    ax.set_ylabel("held-out exact match")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(plt, fig, Path(path))


def render_chat_markdown(runs: dict[str, dict], facts: dict, plots: list[str]) -> str:
    """The chat-arithmetic report's text: one row per RL run, then samples and plots."""
    lines = [
        "# rlhf-pg demo report: chat arithmetic",
        "",
        "A tiny Qwen2 with a ChatML template, fine-tuned on conversations in which a user asks "
        "a sum and a sloppy tutor answers (carries often forgotten), then trained by each "
        "estimator with a verifiable reward: exact match of the reply against the dataset's "
        "`answer` column. Held-out questions use operand pairs never seen in SFT or RL; "
        "'sampled' is the policy RL trains (temperature 1, fixed sampling seed), 'greedy' "
        "is argmax decoding. Percentages are exact-match accuracy.",
        "",
        "## Held-out exact match",
        "",
        "| run | steps x completions | greedy: SFT -> after | sampled: SFT -> after | "
        "gain, sampled | KL to SFT, nats/seq |",
        "|---|---|---|---|---|---|",
    ]
    for name, results in runs.items():
        first, last = results["evals"][0], results["evals"][-1]
        args = results["args"]
        n = args["batch_size"] * args["samples_per_prompt"]
        gain = 100 * (last["accuracy_sampled"] - first["accuracy_sampled"])
        lines.append(
            f"| {name} | {args['max_steps']} x {n} | {first['accuracy']:.1%} -> "
            f"{last['accuracy']:.1%} | {first['accuracy_sampled']:.1%} -> "
            f"{last['accuracy_sampled']:.1%} | {gain:+.1f} points | {last.get('kl_seq', 0.0):.2f} |"
        )
    lines += ["", "## Pipeline", "", "| item | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in facts.items()] + [""]
    names = list(runs)
    lines += ["## Greedy answers to fixed held-out questions", ""]
    lines += ["| question | SFT model | " + " | ".join(names) + " |"]
    lines += ["|---|---|" + "---|" * len(names)]

    def show(row: dict) -> str:  # the greedy answer, marked right or wrong
        return _cell(row["completion"]) + (" ✓" if row.get("correct") else " ✗")

    first_run = runs[names[0]]["evals"][0]["samples"]
    for i, row in enumerate(first_run):
        prompt = row["prompt"]  # a conversation: show its last (user) message
        cells = [_cell(prompt if isinstance(prompt, str) else prompt[-1]["content"]), show(row)]
        for name in names:
            after = runs[name]["evals"][-1]["samples"]
            cells.append(show(after[i]) if i < len(after) else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Plots", ""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_chat_report(out_dir: str | Path, runs: dict[str, dict], facts: dict) -> Path:
    """``accuracy.png`` and ``report.md`` of the chat-arithmetic demo into ``out_dir``;
    ``runs`` maps each RL run's name to its PPO-stage results."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_accuracy(runs, out / "accuracy.png")
    report = out / "report.md"
    atomic_write_text(report, render_chat_markdown(runs, facts, ["accuracy.png"]))
    return report
