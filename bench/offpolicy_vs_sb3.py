"""classic_control TD3 / SAC vs Stable-Baselines3 TD3 / SAC on Pendulum-v1, in one process.

Identical hyperparameters: our bundled presets ``td3_Pendulum-v1.yaml`` and
``sac_Pendulum-v1.yaml`` are the rl-baselines3-zoo Pendulum settings that
``classic_control.compare.baselines_sb3.ZOO`` hands to SB3 (TD3: gamma 0.98,
buffer 200k, 10k random warm-up steps, Gaussian noise 0.1, 400-300 ReLU
nets, lr 1e-3, one learning phase per 200-step episode with 200 gradient
steps, batch 256, tau 0.005, policy delay 2, target noise 0.2 clipped at
0.5; SAC: SB3's defaults with lr 1e-3: 256-256 nets, batch 256, 100 warm-up
steps, one gradient step per env step, learned temperature with target
entropy -1). Runs alternate ours / SB3 seed by seed so both see the same
machine load; 1 torch thread.

Each run trains the full budget (20k env steps), evaluating every 1,000 steps
(10 deterministic episodes, the same eval seeds for both), outside the clock.
Reported per run: env steps per second of training (CPU seconds of this
process and wall seconds), and the training time until the evaluation first
reaches -200.

Ours runs with ``flush_denormal`` on (its default: subnormal floats computed
as zero); SB3 as its users get it, with the CPU's default. ``--sb3-flush-denormal``
adds a third contender, SB3 with the same flag set around its run, to show how
much of the gap that flag is.

    nice python bench/offpolicy_vs_sb3.py --algos td3 sac --seeds 5
    nice python bench/offpolicy_vs_sb3.py --algos td3 sac --seeds 3 --sb3-flush-denormal
    python bench/offpolicy_vs_sb3.py --algos sac --seeds 1 --steps 1000   # smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classic_control.compare.baselines_sb3 import SB3Policy, build_model  # noqa: E402
from classic_control.envs import ObsNormalizer, probe_env  # noqa: E402
from classic_control.evaluate import Evaluator  # noqa: E402
from classic_control.settings import resolve  # noqa: E402
from classic_control.trainer import Trainer  # noqa: E402
from rlhf_pg.utils.io import atomic_write_json  # noqa: E402

ENV, THRESHOLD, EVAL_EVERY, EVAL_EPISODES = "Pendulum-v1", -200.0, 1000, 10


class Clock:
    """Training CPU and wall seconds, with evaluation time taken out."""

    def __init__(self) -> None:
        self.cpu0, self.wall0, self.eval_cpu, self.eval_wall = 0.0, 0.0, 0.0, 0.0

    def start(self) -> None:
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def train_time(self) -> tuple[float, float]:
        cpu = time.process_time() - self.cpu0 - self.eval_cpu
        return cpu, time.perf_counter() - self.wall0 - self.eval_wall

    def timed_eval(self, fn):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        self.eval_cpu += time.process_time() - c0
        self.eval_wall += time.perf_counter() - w0
        return out


def _result(clock: Clock, steps: int, solved) -> dict:
    cpu, wall = clock.train_time()
    return {"steps_per_cpu_s": steps / cpu, "steps_per_wall_s": steps / wall, "solved": solved}


def run_ours(algo: str, seed: int, steps: int) -> dict:
    overrides = {"seed": seed, "total_steps": steps, "eval_every": 0, "torch_threads": 1}
    cfg, preset = resolve(algo, ENV, {**overrides, "eval_episodes": EVAL_EPISODES})
    assert preset == f"{algo}_{ENV}.yaml"
    clock, solved, done = Clock(), None, 0
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(cfg, Path(d))
        clock.start()
        while done < steps:
            chunk = trainer.collector.collect()  # env steps interleaved with gradient steps
            trainer.algo.update(chunk, 1.0)
            done += chunk.steps
            if done % EVAL_EVERY == 0 and solved is None:
                ev = clock.timed_eval(trainer.evaluate)
                if ev["mean_return"] >= THRESHOLD:
                    solved = {"cpu_s": clock.train_time()[0], "wall_s": clock.train_time()[1]}
                    solved.update(env_steps=done, eval_return=ev["mean_return"])
        trainer.close()
    return _result(clock, done, solved)


def run_sb3(algo: str, seed: int, steps: int, flush_denormal: bool = False) -> dict:
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_flush_denormal(flush_denormal)

    model = build_model(algo, ENV, seed)[0]
    spec = probe_env(ENV)
    evaluator = Evaluator(ENV, spec, EVAL_EPISODES, seed)
    identity = ObsNormalizer(spec.obs_dim, False)
    clock = Clock()

    class EvalCallback(BaseCallback):
        solved = None

        def _on_step(self) -> bool:
            if self.num_timesteps % EVAL_EVERY or self.solved is not None:
                return True
            policy = SB3Policy(self.model, None)
            returns, _ = clock.timed_eval(lambda: evaluator.run(policy, identity))
            if np.mean(returns) >= THRESHOLD:
                cpu, wall = clock.train_time()
                self.solved = {"cpu_s": cpu, "wall_s": wall, "env_steps": self.num_timesteps}
                self.solved["eval_return"] = float(np.mean(returns))
            return True

    callback = EvalCallback()
    clock.start()
    model.learn(steps, callback=callback)
    result = _result(clock, model.num_timesteps, callback.solved)
    evaluator.close()
    torch.set_flush_denormal(False)
    return result


CONTENDERS = {
    "ours": run_ours,
    "sb3": run_sb3,
    "sb3-ftz": lambda algo, seed, steps: run_sb3(algo, seed, steps, flush_denormal=True),
}


def _median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def summarise(algo: str, runs: dict[str, list[dict]]) -> str:
    lines = []
    for other in [k for k in runs if k != "ours"]:
        for key in ("steps_per_cpu_s", "steps_per_wall_s"):
            o = [r[key] for r in runs["ours"]]
            b = [r[key] for r in runs[other]]
            lines.append(
                f"{algo} {key}: ours median {_median(o):.1f} ({min(o):.1f}..{max(o):.1f}), "
                f"{other} {_median(b):.1f} ({min(b):.1f}..{max(b):.1f}); "
                f"ratio {_median(o) / _median(b):.2f}x"
            )
        for clock in ("cpu_s", "wall_s"):
            t = {
                k: [r["solved"][clock] if r["solved"] else None for r in runs[k]]
                for k in ("ours", other)
            }
            n = {k: sum(x is not None for x in v) for k, v in t.items()}
            lines.append(
                f"{algo} time to {THRESHOLD:g} ({clock}): ours {n['ours']}/{len(t['ours'])} "
                f"reached, median {_median(t['ours']):.1f}; {other} {n[other]}/{len(t[other])}, "
                f"median {_median(t[other]):.1f}; ours/{other} "
                f"{_median(t['ours']) / _median(t[other]):.2f}"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=["td3", "sac"], choices=["td3", "sac", "ddpg"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--out", type=Path, default=Path("results/offpolicy_vs_sb3.json"))
    p.add_argument(
        "--sb3-flush-denormal",
        action="store_true",
        help="also run SB3 with subnormal floats flushed to zero (ours' default)",
    )
    args = p.parse_args()
    contenders = ["ours", "sb3"] + (["sb3-ftz"] if args.sb3_flush_denormal else [])
    torch.set_num_threads(1)
    import stable_baselines3

    header = (
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} {platform.machine()}, "
        f"torch {torch.__version__}, stable-baselines3 {stable_baselines3.__version__}, 1 thread"
    )
    print(header, flush=True)
    results: dict = {"header": header, "steps": args.steps, "runs": {}}
    for algo in args.algos:
        runs: dict[str, list[dict]] = {who: [] for who in contenders}
        for seed in range(args.seeds):
            # the order rotates seed by seed, so no contender always runs first
            order = contenders[seed % len(contenders) :] + contenders[: seed % len(contenders)]
            for who in order:
                runs[who].append(CONTENDERS[who](algo, seed, args.steps))
                print(f"{algo} seed {seed} {who}: {json.dumps(runs[who][-1])}", flush=True)
        results["runs"][algo] = runs
        print(summarise(algo, runs), flush=True)
        atomic_write_json(args.out, results)  # after each algorithm: a kill keeps the rest


if __name__ == "__main__":
    main()
