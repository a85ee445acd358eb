"""Learning targets of the classic_control agents across seeds (issues 3, 14 and 16).

Each run trains one agent with its bundled preset for the target's env-step
budget, then scores the final policy by the mean return of 10 deterministic
episodes on separate eval envs (``eval.json``). One JSON record per run is
written atomically; re-running the command skips finished runs and resumes an
interrupted one from its last checkpoint (exactly: the long off-policy runs
span several sittings this way).

    nice python bench/classic_control_targets.py --targets ppo-cartpole --seeds 10
    nice -n 19 python bench/classic_control_targets.py --targets td3-lunarlandercontinuous --first-seed 1 --seeds 9

``--config FILE`` lays a YAML file of settings over each target's preset (the
CLI's ``--config``), to test one change of settings against the preset's
records; give it its own ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classic_control import rundir  # noqa: E402
from classic_control.config import ConfigError  # noqa: E402
from classic_control.lifetime import stop_on_sigterm  # noqa: E402
from classic_control.metrics import EVAL_RETURN, STEPS_PER_S  # noqa: E402
from classic_control.settings import resolve  # noqa: E402
from classic_control.trainer import Trainer  # noqa: E402
from rlhf_pg.utils.io import atomic_write_json  # noqa: E402

# name: (algo, env id, env-step budget, threshold, goal: seeds that must reach it, of how many)
TARGETS = {
    "ppo-cartpole": ("ppo", "CartPole-v1", 50_000, 475.0, "9/10"),
    "a2c-cartpole": ("a2c", "CartPole-v1", 200_000, 475.0, "8/10"),
    "reinforce-cartpole": ("reinforce", "CartPole-v1", 300_000, 475.0, "8/10"),
    "ppo-acrobot": ("ppo", "Acrobot-v1", 300_000, -100.0, None),
    "ppo-pendulum": ("ppo", "Pendulum-v1", 300_000, -250.0, None),
    "ppo-lunarlander": ("ppo", "LunarLander-v3", 1_000_000, 200.0, "7/10"),  # issue 16
    # issue 14: off-policy agents
    "ddpg-pendulum": ("ddpg", "Pendulum-v1", 20_000, -200.0, "9/10"),
    "td3-pendulum": ("td3", "Pendulum-v1", 20_000, -200.0, "9/10"),
    "sac-pendulum": ("sac", "Pendulum-v1", 20_000, -200.0, "9/10"),
    "td3-lunarlandercontinuous": ("td3", "LunarLanderContinuous-v3", 300_000, 200.0, "7/10"),
    "sac-lunarlandercontinuous": ("sac", "LunarLanderContinuous-v3", 300_000, 200.0, "7/10"),
    "sac-invertedpendulum": ("sac", "InvertedPendulum-v5", 30_000, 950.0, "9/10"),
    "td3-bipedalwalker": ("td3", "BipedalWalker-v3", 1_000_000, 250.0, "2/3"),
    "sac-mountaincarcontinuous": ("sac", "MountainCarContinuous-v0", 50_000, 90.0, "7/10"),
}


def run_one(name: str, seed: int, out: Path, config_file: Path | None = None) -> dict:
    record_path = out / name / f"seed{seed}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    algo, env_id, steps, threshold, _ = TARGETS[name]
    cfg, preset = resolve(
        algo, env_id, {"seed": seed, "total_steps": steps}, config_file=config_file
    )
    run_dir = out / name / f"run_seed{seed}"
    trainer = Trainer(cfg, run_dir)
    resume = (run_dir / "checkpoint.pt").exists()
    t0 = time.perf_counter()
    try:
        # a SIGTERM (the end of a sitting) checkpoints first: the next call resumes from there
        with stop_on_sigterm(trainer.request_stop):
            result = trainer.train(resume=resume, show_progress=False)
    finally:
        trainer.close()
    if result is None:
        print(f"{name} seed {seed}: stopped at {trainer.env_steps} env steps, checkpoint saved")
        raise SystemExit(128 + signal.SIGTERM)
    rows = rundir.read_metrics(run_dir)
    first = next((r for r in rows if r.get(EVAL_RETURN, -float("inf")) >= threshold), None)
    record = {
        "target": name,
        "algo": algo,
        "env_id": env_id,
        "seed": seed,
        "preset": preset,
        "config_file": config_file and str(config_file),
        "env_steps": result["env_steps"],
        "final_eval_mean": result["mean_return"],
        "final_eval_std": result["std_return"],
        "reached": result["mean_return"] >= threshold,
        "first_eval_at_threshold_steps": first and first["env_steps"],
        "train_time_s": result["train_time_s"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "median_sps": statistics.median(r[STEPS_PER_S] for r in rows),
    }
    atomic_write_json(record_path, record)
    return record


def summarise(name: str, records: list[dict]) -> str:
    _, env_id, steps, threshold, need = TARGETS[name]
    finals = sorted(r["final_eval_mean"] for r in records)
    hits = sum(r["reached"] for r in records)
    q = statistics.quantiles(finals, n=4) if len(finals) > 1 else [finals[0]] * 3
    goal = need or "-"
    return (
        f"| {name} | {steps:,} | >= {threshold:g} | {goal} | {hits}/{len(records)} | "
        f"{statistics.median(finals):.1f} | {q[0]:.1f} .. {q[2]:.1f} | "
        f"{finals[0]:.1f} .. {finals[-1]:.1f} | "
        f"{statistics.median(r['train_time_s'] for r in records):.0f} | "
        f"{statistics.median(r['median_sps'] for r in records):.0f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/classic_targets"))
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file of settings over each target's preset (default: none)",
    )
    args = p.parse_args()
    if args.config is not None and not args.config.is_file():
        p.error(f"--config {args.config}: no such file")
    for name in args.targets:  # a bad setting fails here, before any training
        algo, env_id, steps, _, _ = TARGETS[name]
        try:
            resolve(algo, env_id, {"total_steps": steps}, config_file=args.config)
        except ConfigError as e:
            p.error(f"{name}: {e}")
    torch.set_num_threads(1)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, 1 thread"
    )
    header = (
        "| target | budget | threshold | goal | reached | median final eval | IQR | "
        "min .. max | median train s | median steps/s |"
    )
    lines = [header, "|" + "---|" * 10]
    for name in args.targets:
        records = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            r = run_one(name, seed, args.out, args.config)
            print(
                f"{name} seed {seed}: final eval {r['final_eval_mean']:.1f} "
                f"(first >= threshold at {r['first_eval_at_threshold_steps']}) "
                f"{r['train_time_s']:.0f}s",
                flush=True,
            )
            records.append(r)
        lines.append(summarise(name, records))
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
