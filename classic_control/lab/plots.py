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
        ax.plot(pos, [gae[m]["relative_variance"] for m in lams], "-o", color=cmap(i),
                label=f"{_policy_title(percent, res)}: variance")
        ax.plot(pos, [gae[m]["bias"] ** 2 / ref2 for m in lams], ":x", color=cmap(i),
                label="bias^2")
        ax.set_xticks(pos, [f"{m:g}" for m in lams])
    ax.set_yscale("log")
    ax.set_xlabel("GAE lambda")
    ax.set_ylabel("per episode, / |reference|^2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    _save(fig, path)
