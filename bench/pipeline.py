"""Benchmark of the offline RLHF pipeline (issue: pipeline targets).

Sentiment: the whole default demo (``rlhf-pg demo``) per seed from a COLD cache (an empty
cache folder, a fresh process), timed wall-clock; from its summary: gold score (mean VADER
compound, share positive) before / after PPO on held-out prompts, KL to the reference per
sequence, reward-model held-out pairwise accuracy.

Arithmetic: one SFT model (recipes/configs/sft_arithmetic.yaml, cached), then the PPO,
RLOO and GRPO recipes per seed; held-out exact-match accuracy (greedy) before / after.

Chat arithmetic: the whole ``rlhf-pg demo --task chat-arithmetic`` per seed from a COLD
cache in a fresh process, timed wall-clock (SFT of its own Qwen2, then GRPO, RLOO and PPO);
from its summary: held-out exact match (greedy and sampled) before / after each estimator.

    python bench/pipeline.py --part sentiment --seeds 0 1 2 --out results/pipeline
    python bench/pipeline.py --part arithmetic --seeds 0 1 2 --out results/pipeline
    python bench/pipeline.py --part chat-arithmetic --seeds 0 1 2 --out results/pipeline

Every finished run is added to ``<out>/results.json`` at once (atomic write), so a killed
benchmark keeps what it measured and ``--resume`` skips it. ``--markdown`` prints the
tables of what is there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlhf_pg.utils.io import atomic_write_json  # noqa: E402

ESTIMATORS = ("ppo", "rloo", "grpo")


def _child_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run_timed(cmd: list[str], log: Path, env: dict | None = None) -> tuple[float, float]:
    """Run a command (output to ``log``); returns (wall seconds, CPU seconds of the child)."""
    cpu, start = _child_cpu(), time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall, cpu = time.perf_counter() - start, _child_cpu() - cpu
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with {proc.returncode}; see {log}")
    return wall, cpu


def load(out: Path) -> dict:
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for part in ("sentiment", "arithmetic", "chat-arithmetic"):
        results.setdefault(part, {})
    return results


def save(out: Path, results: dict) -> None:
    atomic_write_json(out / "results.json", results)


def sentiment_run(seed: int, out: Path, threads: int) -> dict:
    run_dir = out / f"demo_seed{seed}"
    with tempfile.TemporaryDirectory(prefix="rlhf-pg-cold-cache-") as cache:
        cmd = [str(Path(sys.executable).parent / "rlhf-pg"), "demo", "--out", str(run_dir)]
        cmd += ["--seed", str(seed), "--cache-dir", cache, "--no-progress"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        load_before = os.getloadavg()[0]
        wall, cpu = run_timed(cmd, out / f"demo_seed{seed}.log", env)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "command": " ".join(cmd[:-4] + ["--seed", str(seed), "--cache-dir", "<empty dir>"]),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_average_at_start": load_before,
        **{k: v for k, v in summary.items() if k not in ("config", "stages", "report")},
    }


def chat_arithmetic_run(seed: int, out: Path, threads: int) -> dict:
    """The chat-arithmetic demo from an empty cache, in a fresh process."""
    run_dir = out / f"chat_demo_seed{seed}"
    with tempfile.TemporaryDirectory(prefix="rlhf-pg-cold-cache-") as cache:
        cmd = [str(Path(sys.executable).parent / "rlhf-pg"), "demo", "--task", "chat-arithmetic"]
        cmd += ["--out", str(run_dir), "--seed", str(seed), "--cache-dir", cache, "--no-progress"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        load_before = os.getloadavg()[0]
        wall, cpu = run_timed(cmd, out / f"chat_demo_seed{seed}.log", env)
        load_after = os.getloadavg()[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    runs = {}
    for est, figures in summary["estimators"].items():
        results = json.loads((run_dir / est / "ppo_results.json").read_text())
        curve = [(e["step"], e["accuracy"], e["accuracy_sampled"]) for e in results["evals"]]
        runs[est] = {**figures, "accuracy_curve": curve}
    return {
        "command": " ".join(cmd[:-5] + ["--seed", str(seed), "--cache-dir", "<empty dir>"]),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_average_at_start": load_before,
        "load_average_at_end": load_after,
        "seconds": summary["seconds"],
        "estimators": runs,
    }


def arithmetic_sft(out: Path, threads: int) -> str:
    path = out / "sft_arithmetic"
    if not (path / "sft_metrics.json").exists():
        cmd = [sys.executable, "recipes/sft.py", "--config", "recipes/configs/sft_arithmetic.yaml"]
        cmd += ["--output_dir", str(path), "--num_threads", str(threads)]
        cmd += ["--no_progress"]
        run_timed(cmd, out / "sft_arithmetic.log")
    return str(path)


def arithmetic_run(estimator: str, seed: int, sft: str, out: Path, threads: int) -> dict:
    run_dir = out / f"{estimator}_arithmetic_seed{seed}"
    cmd = [
        sys.executable,
        "recipes/ppo.py",
        "--config",
        f"recipes/configs/{estimator}_arithmetic.yaml",
    ]
    cmd += ["--model_name_or_path", sft, "--seed", str(seed), "--output_dir", str(run_dir)]
    cmd += ["--num_threads", str(threads), "--progress_bar", "false", "--save_policy", "false"]
    wall, cpu = run_timed(cmd, out / f"{estimator}_arithmetic_seed{seed}.log")
    res = json.loads((run_dir / "ppo_results.json").read_text())
    evals = res["evals"]
    return {
        "command": " ".join(cmd),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "steps": res["args"]["max_steps"],
        "accuracy_before": evals[0]["accuracy"],
        "accuracy_after": evals[-1]["accuracy"],
        "accuracy_sampled_before": evals[0]["accuracy_sampled"],
        "accuracy_sampled_after": evals[-1]["accuracy_sampled"],
        "accuracy_curve": [(e["step"], e["accuracy"], e["accuracy_sampled"]) for e in evals],
        "train_score_first5": statistics.fmean(h["score/mean"] for h in res["history"][:5]),
        "train_score_last5": statistics.fmean(h["score/mean"] for h in res["history"][-5:]),
    }


def _spread(values: list[float], fmt: str = "{:.3f}") -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0]) + " (1 seed)"
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    lo, hi = min(values), max(values)
    return f"{fmt.format(mean)} ± {fmt.format(sd)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def markdown(results: dict) -> str:
    lines = []
    sent = list(results["sentiment"].values())
    if sent:
        rows = [
            ("demo wall-clock, s (cold cache)", [r["wall_seconds"] for r in sent], "{:.0f}"),
            ("demo CPU time, s (all threads)", [r["cpu_seconds"] for r in sent], "{:.0f}"),
            ("gold mean compound, SFT", [r["gold_mean_before"] for r in sent], "{:.3f}"),
            ("gold mean compound, after PPO", [r["gold_mean_after"] for r in sent], "{:.3f}"),
            (
                "gain in mean compound",
                [r["gold_mean_after"] - r["gold_mean_before"] for r in sent],
                "{:+.3f}",
            ),
            ("% positive, SFT", [100 * r["gold_positive_before"] for r in sent], "{:.1f}"),
            ("% positive, after PPO", [100 * r["gold_positive_after"] for r in sent], "{:.1f}"),
            ("KL to reference, nats/seq, after PPO", [r["kl_seq_after"] for r in sent], "{:.2f}"),
            (
                "proxy reward, SFT -> after",
                [r["proxy_after"] - r["proxy_before"] for r in sent],
                "{:+.2f}",
            ),
            ("RM held-out pairwise accuracy, %", [100 * r["rm_accuracy"] for r in sent], "{:.1f}"),
        ]
        lines += [f"Sentiment, seeds {sorted(results['sentiment'])} (mean ± sd [min, max]):", ""]
        lines += ["| measure | value |", "|---|---|"]
        lines += [f"| {name} | {_spread(v, fmt)} |" for name, v, fmt in rows]
        stages = {k for r in sent for k in r.get("seconds", {})}
        for k in sorted(stages):
            vals = [r["seconds"][k] for r in sent if k in r.get("seconds", {})]
            lines.append(f"| stage seconds: {k} | {_spread(vals, '{:.0f}')} |")
        lines.append("")
    arith = results["arithmetic"]
    if arith:
        lines += ["Arithmetic, held-out exact match, % (mean ± sd [min, max]):", ""]
        lines += ["| estimator | seeds | SFT | after RL | gain (points) |", "|---|---|---|---|---|"]
        for est in ESTIMATORS:
            runs = [r for key, r in arith.items() if key.startswith(est + "_")]
            if not runs:
                continue
            before = [100 * r["accuracy_before"] for r in runs]
            after = [100 * r["accuracy_after"] for r in runs]
            gain = [a - b for a, b in zip(after, before)]
            lines.append(
                f"| {est} | {len(runs)} | {_spread(before, '{:.1f}')} | "
                f"{_spread(after, '{:.1f}')} | {_spread(gain, '{:+.1f}')} |"
            )
            before = [100 * r["accuracy_sampled_before"] for r in runs]
            after = [100 * r["accuracy_sampled_after"] for r in runs]
            gain = [a - b for a, b in zip(after, before)]
            lines.append(
                f"| {est}, sampled (T=1) | {len(runs)} | {_spread(before, '{:.1f}')} | "
                f"{_spread(after, '{:.1f}')} | {_spread(gain, '{:+.1f}')} |"
            )
        lines.append("")
    chat = results["chat-arithmetic"]
    if chat:
        seeds = sorted(chat, key=int)
        lines += [f"Chat arithmetic, held-out exact match, %, seeds {seeds}:", ""]
        lines += [
            "| estimator | greedy: SFT -> after (per seed) | gain | sampled: SFT -> after "
            "(per seed) | gain | gain, mean [min, max] (greedy / sampled) |",
            "|---|---|---|---|---|---|",
        ]
        for est in ("grpo", "rloo", "ppo"):
            runs = [chat[s]["estimators"][est] for s in seeds if est in chat[s]["estimators"]]
            if not runs:
                continue
            cells, gains = [], {}
            for kind, key in (("greedy", "accuracy"), ("sampled", "accuracy_sampled")):
                pairs = [(100 * r[f"{key}_before"], 100 * r[f"{key}_after"]) for r in runs]
                gains[kind] = [a - b for b, a in pairs]
                cells.append(" / ".join(f"{b:.1f} -> {a:.1f}" for b, a in pairs))
                cells.append(" / ".join(f"{g:+.1f}" for g in gains[kind]))
            spread = " / ".join(
                f"{statistics.fmean(g):+.1f} [{min(g):+.1f}, {max(g):+.1f}]" for g in gains.values()
            )
            lines.append(f"| {est} | " + " | ".join(cells) + f" | {spread} |")
        walls = " / ".join(f"{chat[s]['wall_seconds']:.0f}" for s in seeds)
        loads = " / ".join(
            f"{chat[s]['load_average_at_start']:.1f}-{chat[s].get('load_average_at_end', 0):.1f}"
            for s in seeds
        )
        lines += ["", f"Wall-clock per seed, s: {walls} (load average at start-end: {loads})", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=("sentiment", "arithmetic", "chat-arithmetic", "all"), default="all"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
    parser.add_argument("--out", default="results/pipeline")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="skip runs already in results")
    parser.add_argument("--markdown", action="store_true", help="only print the tables")
    ns = parser.parse_args(argv)
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    results = load(out)
    if ns.markdown:
        print(markdown(results))
        return
    results["machine"] = f"{platform.platform()}, {os.cpu_count()} cores"
    results["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    if ns.part in ("sentiment", "all"):
        for seed in ns.seeds:
            if ns.resume and str(seed) in results["sentiment"]:
                continue
            print(f"sentiment demo, seed {seed} ...", flush=True)
            results["sentiment"][str(seed)] = sentiment_run(seed, out, ns.threads)
            save(out, results)
    if ns.part in ("arithmetic", "all"):
        sft = arithmetic_sft(out, ns.threads)
        for seed in ns.seeds:
            for est in ns.estimators:
                key = f"{est}_seed{seed}"
                if ns.resume and key in results["arithmetic"]:
                    continue
                print(f"arithmetic {est}, seed {seed} ...", flush=True)
                results["arithmetic"][key] = arithmetic_run(est, seed, sft, out, ns.threads)
                save(out, results)
    if ns.part in ("chat-arithmetic", "all"):
        for seed in ns.seeds:
            if ns.resume and str(seed) in results["chat-arithmetic"]:
                continue
            print(f"chat-arithmetic demo, seed {seed} ...", flush=True)
            results["chat-arithmetic"][str(seed)] = chat_arithmetic_run(seed, out, ns.threads)
            save(out, results)
    print(markdown(results))


if __name__ == "__main__":
    main()
