"""Steps and CPU time to first solve CartPole-v1 for candidate PPO settings (preset search).

For each seed: train with the bundled preset plus the given overrides, evaluate the
deterministic policy (10 episodes, separate envs) every 2,560 env steps outside the clock,
and stop at the first evaluation >= 475. Prints one JSON line per candidate (solved seeds,
median env steps and median training CPU seconds to solve) and appends it to ``--out``.
This is how the PPO CartPole preset was chosen (docs/benchmarks.md).

    python bench/classic_control_preset_search.py E6 \
        '{"num_envs": 4, "num_steps": 64, "num_minibatches": 8, "update_epochs": 4, "learning_rate": 0.0025}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classic_control.settings import resolve  # noqa: E402
from classic_control.trainer import Trainer  # noqa: E402

ENV, THRESHOLD, EVAL_EVERY = "CartPole-v1", 475.0, 2560


def steps_to_solve(overrides: dict, seed: int, max_steps: int) -> tuple[float, int] | None:
    """(training CPU seconds, env steps) at the first eval >= THRESHOLD, or None."""
    cfg, _ = resolve("ppo", ENV, {**overrides, "seed": seed, "eval_every": 10**9})
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(cfg, Path(d))
        cpu, next_eval = 0.0, EVAL_EVERY
        try:
            while trainer.env_steps < max_steps:
                c0 = time.process_time()
                trainer.update_once()
                cpu += time.process_time() - c0
                if trainer.env_steps >= next_eval:
                    next_eval += EVAL_EVERY
                    if trainer.evaluate()["mean_return"] >= THRESHOLD:
                        return cpu, trainer.env_steps
        finally:
            trainer.close()
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="a label for the candidate")
    p.add_argument("overrides", type=json.loads, help="JSON object of config keys")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=40_000)
    p.add_argument("--out", type=Path, default=Path("results/ppo_preset_search.jsonl"))
    args = p.parse_args()
    torch.set_num_threads(1)
    runs = [steps_to_solve(args.overrides, s, args.max_steps) for s in range(args.seeds)]
    solved = [r for r in runs if r is not None]
    line = {
        "name": args.name,
        "overrides": args.overrides,
        "solved": len(solved),
        "seeds": args.seeds,
        "median_steps": statistics.median(s for _, s in solved) if solved else None,
        "median_cpu_s": statistics.median(c for c, _ in solved) if solved else None,
        "runs": runs,
    }
    print(json.dumps(line), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
