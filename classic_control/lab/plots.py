"""The lab's figures (matplotlib, Agg backend); each function writes one PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {
    "total": "total return",
    "reward_to_go": "reward-to-go",
    "rtg_minus_constant": "rtg - constant",
    "rtg_minus_value": "rtg - V(s)",
}


def label(name: str) -> str:
    if name.startswith("gae_"):
        lam = name[4:]
        return "TD(0) = GAE 0" if lam == "0" else f"GAE {lam}"
    return LABELS.get(name, name)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _policy_title(percent: str, res: dict) -> str:
    name = "random init" if percent == "0" else f"PPO at {percent}%"
    return f"{name} (mean length {res['mean_episode_length']:.0f})"


def gradient_variance(data: dict, path: Path) -> None:
    """Relative variance and bias^2 of every estimator, one panel per policy."""
    policies = data["policies"]
    fig, axes = plt.subplots(1, len(policies), figsize=(4.2 * len(policies), 4), dpi=110)
    for ax, (percent, res) in zip(np.atleast_1d(axes), policies.items()):
        names = list(res["estimators"])
        ref2 = res["reference_norm"] ** 2
        var = [res["estimators"][k]["relative_variance"] for k in names]
        bias2 = [res["estimators"][k]["bias"] ** 2 / ref2 for k in names]
        floor = [res["estimators"][k]["bias_noise_floor"] ** 2 / ref2 for k in names]
        x = np.arange(len(names))
        ax.bar(x, var, color="tab:blue", alpha=0.8, label="variance / |g|^2 (one episode)")
        ax.plot(x, bias2, "o", color="tab:red", label="bias^2 / |g|^2")
        ax.plot(x, floor, "_", color="k", ms=12, label="bias^2 noise floor")
        ax.set_yscale("log")
        ax.set_xticks(x, [label(k) for k in names], rotation=60, ha="right", fontsize=8)
        ax.set_title(_policy_title(percent, res), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    _save(fig, path)


def cosine_vs_batch(data: dict, path: Path) -> None:
    """Cosine similarity of an N-episode mean to the reference gradient, against N."""
    policies = data["policies"]
    fig, axes = plt.subplots(1, len(policies), figsize=(4.2 * len(policies), 3.8), dpi=110)
    cmap = plt.get_cmap("tab10")
    for ax, (percent, res) in zip(np.atleast_1d(axes), policies.items()):
        for i, (name, est) in enumerate(res["estimators"].items()):
            sizes = [int(n) for n in est["cosine_vs_batch_size"]]
            cos = [v["mean"] for v in est["cosine_vs_batch_size"].values()]
            style = "-" if name.startswith("gae_") else "--"
            ax.plot(sizes, cos, style, marker=".", color=cmap(i % 10), label=label(name))
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.1, 1.0)
        ax.set_xlabel("episodes per batch N")
        ax.set_title(_policy_title(percent, res), fontsize=9)
        ax.grid(alpha=0.3)
    first = np.atleast_1d(axes)[0]
    first.set_ylabel("cosine(mean of N, reference)")
    first.legend(fontsize=6, ncol=2)
    _save(fig, path)


def gae_lambda(data: dict, path: Path) -> None:
    """Variance and bias^2 of GAE against lambda, relative to |reference|^2."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    cmap = plt.get_cmap("tab10")
    for i, (percent, res) in enumerate(data["policies"].items()):
        gae = {float(k[4:]): v for k, v in res["estimators"].items() if k.startswith("gae_")}
        lams = sorted(gae)
        ref2 = res["reference_norm"] ** 2
        pos = np.arange(len(lams))
        ax.plot(
            pos,
            [gae[m]["relative_variance"] for m in lams],
            "-o",
            color=cmap(i),
            label=f"{_policy_title(percent, res)}: variance",
        )
        ax.plot(
            pos, [gae[m]["bias"] ** 2 / ref2 for m in lams], ":x", color=cmap(i), label="bias^2"
        )
        ax.set_xticks(pos, [f"{m:g}" for m in lams])
    ax.set_yscale("log")
    ax.set_xlabel("GAE lambda")
    ax.set_ylabel("per episode, / |reference|^2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    _save(fig, path)


def importance(data: dict, path: Path) -> None:
    """Effective sample size, weight spread and gradient-estimate quality against the horizon."""
    rows = data["horizons"]
    h = [r["horizon"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    ax = axes[0]
    ax.plot(h, [r["ess_fraction"] for r in rows], "-o", label="trajectory weights: ESS / n")
    ax.plot(h, [r["max_weight_share"] for r in rows], "-s", label="largest weight's share")
    ax.set_yscale("log")
    ax.set_yticks(
        [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0], ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"]
    )
    ax.set_title("whole-trajectory importance weights", fontsize=9)
    ax = axes[1]
    ax.plot(h, [r["log_weight_std"] for r in rows], "-o", label="std of log w(tau)")
    ax.plot(h, [r["step_ratio_std"] for r in rows], "-s", label="std of a per-step ratio")
    ax.set_title("spread of the weights", fontsize=9)
    ax = axes[2]
    for kind, marker in (("trajectory", "o"), ("per_step", "s")):
        g = [r["gradient"][kind] for r in rows]
        name = kind.replace("_", "-")
        ax.plot(
            h,
            [x["total_variance"] for x in g],
            "-" + marker,
            label=f"{name} ratios: variance of one episode's estimate",
        )
    ax.plot(
        h,
        [r["gradient"]["trajectory"]["reference_norm"] ** 2 for r in rows],
        "k:",
        label="|on-policy gradient|^2",
    )
    ax.set_yscale("log")
    ax.set_title("gradient of the new policy from old episodes", fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(h, [str(x) for x in h])
        ax.minorticks_off()
        ax.set_xlabel("time limit (max_episode_steps)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path)


def seed_curves(results: Path, path: Path) -> None:
    """Every seed's deterministic-eval curve (thin) and the median (thick), per env and algo.

    ``results`` holds one compare sweep per env (``results/<env>/records``)."""
    from ..compare import records, report

    by_env = {}
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        by_env.update(report.group(records.load_records(folder)))
    n_algo = max(len(v) for v in by_env.values())
    fig, axes = plt.subplots(
        len(by_env),
        n_algo,
        figsize=(3.8 * n_algo, 3.2 * len(by_env)),
        dpi=110,
        squeeze=False,
        sharey="row",
    )
    for row, (env_id, by_algo) in zip(axes, by_env.items()):
        for ax, (algo, recs) in zip(row, by_algo.items()):
            points = report.grid(recs)
            curves = np.stack([report.on_grid(r, points) for r in recs])
            for c in curves:
                ax.plot(points, c, lw=0.7, alpha=0.5, color="tab:blue")
            ax.plot(points, np.nanmedian(curves, 0), lw=2, color="k", label="median")
            ax.set_title(f"{env_id}: {algo} ({len(recs)} seeds)", fontsize=9)
            ax.set_xlabel("env steps")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("eval return (deterministic)")
    _save(fig, path)


def kl_controller(results: Path, path: Path) -> None:
    """Per env: the measured KL(old || new) of each update for both PPO variants, the
    penalty's target, and the penalty coefficient beta that the controller set."""
    from .. import rundir
    from ..compare import records

    folders = sorted(p for p in results.iterdir() if p.is_dir())
    fig, axes = plt.subplots(2, len(folders), figsize=(5 * len(folders), 6), dpi=110, squeeze=False)
    for col, folder in enumerate(folders):
        target = None
        for rec in records.load_records(folder):
            rows = rundir.read_metrics(folder / rec["run_dir"])
            steps = [r["env_steps"] for r in rows]
            # PPO-clip logs approx_kl (policy/approx_kl after the metric-name change)
            kl = [r.get("policy/approx_kl", r.get("approx_kl")) for r in rows]
            color = "tab:orange" if rec["algo"] == "ppo_kl" else "tab:blue"
            label = rec["algo"] if rec["seed"] == 0 else None
            axes[0, col].plot(steps, kl, lw=0.6, alpha=0.6, color=color, label=label)
            if rec["algo"] == "ppo_kl":
                target = rec["config"]["kl_target"]
                beta = [r["kl/coef"] for r in rows]
                axes[1, col].plot(steps, beta, lw=0.8, color=color, label=f"seed {rec['seed']}")
        if target is not None:
            axes[0, col].axhline(target, color="k", ls="--", lw=0.8, label="kl_target")
        axes[0, col].set_yscale("log")
        axes[0, col].set_title(f"{folder.name}: KL(old || new) per update", fontsize=9)
        axes[1, col].set_yscale("log")
        axes[1, col].set_title(f"{folder.name}: ppo_kl's penalty coefficient beta", fontsize=9)
        for ax in axes[:, col]:
            ax.set_xlabel("env steps")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    _save(fig, path)
