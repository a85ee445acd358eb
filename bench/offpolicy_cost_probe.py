"""Cost per env step of an off-policy preset once learning runs, from a short probe.

Builds the trainer of ``<algo>_<env>.yaml``, takes 256 random warm-up steps,
then three chunks of 256 env steps with the preset's learning schedule, and
prints env steps per CPU second of this process (and per wall second) over
those three chunks. Multiply by the budget for the cost of a full run; used
in docs/benchmarks.md for the budgets too large to run here.

    python bench/offpolicy_cost_probe.py td3 BipedalWalker-v3
    python bench/offpolicy_cost_probe.py sac LunarLanderContinuous-v3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classic_control.config import ConfigError  # noqa: E402
from classic_control.settings import resolve  # noqa: E402
from classic_control.trainer import Trainer  # noqa: E402

CHUNK, CHUNKS = 256, 3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("algo", choices=["ddpg", "td3", "sac"])
    p.add_argument("env_id")
    args = p.parse_args()
    torch.set_num_threads(1)
    overrides = {"total_steps": 10**6, "num_steps": CHUNK, "learning_starts": CHUNK}
    overrides.update(eval_every=0, eval_episodes=1, checkpoint_every=0, buffer_size=50_000)
    with tempfile.TemporaryDirectory() as d:
        try:  # an unknown env or a discrete one: one line, exit 2
            cfg, preset = resolve(args.algo, args.env_id, overrides)
            trainer = Trainer(cfg, Path(d))
        except ConfigError as e:
            p.error(str(e))
        trainer.collector.collect()  # warm-up (and the first learning phase)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(CHUNKS):
            trainer.algo.update(trainer.collector.collect(), 1.0)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        trainer.close()
    n = CHUNK * CHUNKS * cfg.num_envs
    print(
        f"{args.algo} {args.env_id} ({preset}): {n / cpu:.1f} env steps per CPU s, "
        f"{n / wall:.1f} per wall s while learning"
    )


if __name__ == "__main__":
    main()
