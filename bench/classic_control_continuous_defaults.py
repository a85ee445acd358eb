"""PPO on continuous-action envs with no preset: the defaults against the defaults plus
observation and reward normalisation (``norm_obs``, ``norm_reward``).

The config is built from Config's defaults under the algorithm's own (``--algo``, default
ppo) and the variant, so neither a bundled preset (Pendulum-v1 has one) nor the algorithm's
``continuous_defaults`` enter. Each run trains ``--steps`` env steps and reports
the final deterministic evaluation (10 episodes on separate envs, the run's own protocol) and
the best evaluation seen (every 10k env steps). One JSON line per run, appended to ``--out``.

    python bench/classic_control_continuous_defaults.py --envs Pendulum-v1 \
        MountainCarContinuous-v0 --seeds 0 1 2 --steps 100000
    python bench/classic_control_continuous_defaults.py --table   # markdown table of --out
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classic_control.algos import REGISTRY  # noqa: E402
from classic_control.config import Config  # noqa: E402
from classic_control.trainer import Trainer  # noqa: E402
from rlhf_pg.utils.config import config_from_dict  # noqa: E402

VARIANTS = {
    "defaults": {},
    "norm_obs+norm_reward": {"norm_obs": True, "norm_reward": True},
}


def run(algo: str, env_id: str, variant: str, seed: int, steps: int) -> dict:
    values = {**REGISTRY[algo].defaults, **VARIANTS[variant]}
    values.update(algo=algo, env_id=env_id, seed=seed, total_steps=steps)
    cfg = config_from_dict(Config, values, source="bench")
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(cfg, Path(d))
        t0 = time.perf_counter()
        try:
            result = trainer.train(show_progress=False)
        finally:
            trainer.close()
    return {
        "algo": algo,
        "env": env_id,
        "variant": variant,
        "seed": seed,
        "steps": steps,
        "final_eval": round(result["mean_return"], 2),
        "best_eval": round(result["best_eval_return"], 2),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def table(path: Path) -> str:
    """A markdown table of the runs in ``path``: per algorithm, env and variant, the median,
    range and per-seed list of the final evaluations."""
    groups: dict[tuple, list[dict]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        groups.setdefault((r.get("algo", "ppo"), r["env"], r["variant"], r["steps"]), []).append(r)
    out = [
        "| algo | env | settings | steps | seeds | median final | min .. max | finals by seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (algo, env, variant, steps), runs in groups.items():
        runs.sort(key=lambda r: r["seed"])
        finals = [r["final_eval"] for r in runs]
        out.append(
            f"| {algo} | {env} | {variant} | {steps:,} | {len(runs)} | "
            f"{statistics.median(finals):.1f} | {min(finals):.1f} .. {max(finals):.1f} | "
            f"{', '.join(f'{f:.1f}' for f in finals)} |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="ppo", choices=list(REGISTRY))
    p.add_argument("--envs", nargs="+", default=["Pendulum-v1", "MountainCarContinuous-v0"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", type=Path, default=Path("results/continuous_defaults.jsonl"))
    p.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = p.parse_args()
    if args.table:
        print(table(args.out))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for env_id in args.envs:
        for seed in args.seeds:
            for variant in args.variants:
                line = run(args.algo, env_id, variant, seed, args.steps)
                print(json.dumps(line), flush=True)
                with args.out.open("a") as f:
                    f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
