"""classic_control PPO vs Stable-Baselines3 PPO on CartPole-v1, side by side in one process.

Two measurements, alternating ours and SB3 run by run so both see the same
machine load, 1 torch thread, CPU:

1. speed: env steps per second of training (rollout + update, no evaluation)
   with IDENTICAL hyperparameters, the rl-baselines3-zoo CartPole settings
   (8 envs x 32 steps, one 256 minibatch, 20 epochs, gamma 0.98, GAE 0.8,
   lr 1e-3 and clip 0.2 both linearly annealed, no entropy bonus, no value
   clipping, grad-norm clip 0.5). SB3's value loss is MSE without the 1/2,
   so our vf_coef is 1.0 to match its 0.5.
2. time to solve: training time until the deterministic eval (10 episodes,
   same eval seeds for both) first reaches 475, evaluating every 2,560 steps
   and excluding evaluation time; ours with its bundled preset, SB3 with the
   zoo settings (100k-step schedule).

Both are reported in CPU seconds of the process (``time.process_time``) as
well as wall-clock for the speed part: on a shared, oversubscribed machine
the wall clock mostly measures the other tenants.

    nice python bench/classic_control_vs_sb3.py --seeds 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classic_control_preset_search import ENV, EVAL_EVERY, THRESHOLD, steps_to_solve  # noqa: E402

from classic_control.compare.baselines_sb3 import ZOO as ZOO_SETTINGS  # noqa: E402
from classic_control.compare.baselines_sb3 import SB3Policy, build_model  # noqa: E402
from classic_control.envs import ObsNormalizer, probe_env  # noqa: E402
from classic_control.evaluate import Evaluator  # noqa: E402
from classic_control.settings import resolve  # noqa: E402
from classic_control.trainer import Trainer  # noqa: E402

ZOO = ZOO_SETTINGS[("ppo", ENV)]
SB3_BUDGET = 100_000  # the zoo's CartPole budget: sets the learning-rate and clip schedules
# the zoo settings in our config's names; SB3's value loss is MSE without the 1/2, hence vf 1.0
OURS_AS_ZOO = {
    "num_envs": ZOO["n_envs"],
    "num_steps": ZOO["n_steps"],
    "num_minibatches": ZOO["n_envs"] * ZOO["n_steps"] // ZOO["batch_size"],
    "update_epochs": ZOO["n_epochs"],
    "gamma": ZOO["gamma"],
    "gae_lambda": ZOO["gae_lambda"],
    "learning_rate": 1e-3,  # ZOO["learning_rate"] = "lin_0.001"
    "anneal_lr": True,
    "clip_eps": 0.2,  # ZOO["clip_range"] = "lin_0.2"
    "anneal_clip": True,
    "entropy_coef": ZOO["ent_coef"],
    "vf_coef": 1.0,
    "clip_vloss": False,
    "max_grad_norm": 0.5,
    "norm_adv": True,
}


def sb3_model(seed: int):
    return build_model("ppo", ENV, seed)[0]


def sb3_speed(seed: int, steps: int) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process)."""
    model = sb3_model(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(steps)
    return steps / (time.perf_counter() - t0), steps / (time.process_time() - c0)


def ours_speed(seed: int, steps: int) -> tuple[float, float]:
    cfg, _ = resolve(
        "ppo",
        ENV,
        {**OURS_AS_ZOO, "seed": seed, "total_steps": steps, "eval_every": 0, "eval_episodes": 1},
    )
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(cfg, Path(d))
        t0, c0 = time.perf_counter(), time.process_time()
        while trainer.env_steps < steps - cfg.num_envs * cfg.num_steps:
            trainer.update_once()  # all but the last update, which also evaluates
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        trainer.close()
    return trainer.env_steps / wall, trainer.env_steps / cpu


def sb3_time_to_solve(seed: int) -> tuple[float | None, int | None]:
    from stable_baselines3.common.callbacks import BaseCallback

    spec = probe_env(ENV)
    evaluator = Evaluator(ENV, spec, 10, seed)
    identity = ObsNormalizer(spec.obs_dim, enabled=False)

    class EvalCallback(BaseCallback):
        def _on_training_start(self) -> None:
            self.next_eval, self.eval_cpu, self.start = EVAL_EVERY, 0.0, time.process_time()
            self.solved_at = None

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            self.next_eval += EVAL_EVERY
            c0 = time.process_time()
            returns, _ = evaluator.run(SB3Policy(self.model, None), identity)
            self.eval_cpu += time.process_time() - c0
            if np.mean(returns) >= THRESHOLD:
                self.solved_at = (
                    time.process_time() - self.start - self.eval_cpu,
                    self.num_timesteps,
                )
                return False
            return True

    callback = EvalCallback()
    sb3_model(seed).learn(SB3_BUDGET, callback=callback)
    evaluator.close()
    return callback.solved_at or (None, None)


def ours_time_to_solve(seed: int) -> tuple[float | None, int | None]:
    # the same protocol as SB3's above: eval every 2,560 steps, outside the clock
    return steps_to_solve({}, seed, max_steps=50_000) or (None, None)


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--speed-steps", type=int, default=25_600)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-solve", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    import stable_baselines3

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} {platform.machine()}, "
        f"torch {torch.__version__}, stable-baselines3 {stable_baselines3.__version__}, "
        "1 torch thread",
        flush=True,
    )
    if not args.skip_speed:
        ours, sb3 = [], []
        for seed in range(args.seeds):
            ours.append(ours_speed(seed, args.speed_steps))
            sb3.append(sb3_speed(seed, args.speed_steps))
            print(
                f"speed seed {seed}: ours {ours[-1][0]:.0f} steps/s wall, {ours[-1][1]:.0f} per "
                f"CPU s; sb3 {sb3[-1][0]:.0f} wall, {sb3[-1][1]:.0f} per CPU s",
                flush=True,
            )
        for i, clock in enumerate(("wall", "CPU")):
            o, b = [x[i] for x in ours], [x[i] for x in sb3]
            ratios = [x / y for x, y in zip(o, b)]
            print(
                f"SPEED ({clock} clock) zoo settings, {args.speed_steps} steps: ours median "
                f"{_median(o):.0f} (min {min(o):.0f}, max {max(o):.0f}) steps/s; SB3 median "
                f"{_median(b):.0f} (min {min(b):.0f}, max {max(b):.0f}); ratio of medians "
                f"{_median(o) / _median(b):.2f}x, per-pair {min(ratios):.2f}..{max(ratios):.2f}",
                flush=True,
            )
    if not args.skip_solve:
        ours, sb3 = [], []
        for seed in range(args.seeds):
            ours.append(ours_time_to_solve(seed))
            sb3.append(sb3_time_to_solve(seed))
            print(
                f"solve seed {seed}: ours {ours[-1]}, sb3 {sb3[-1]} (train CPU s, env steps)",
                flush=True,
            )
        t_ours, t_sb3 = _median(t for t, _ in ours), _median(t for t, _ in sb3)
        print(
            f"SOLVE eval >= {THRESHOLD:g}: ours solved {sum(t is not None for t, _ in ours)}/"
            f"{len(ours)}, median {t_ours:.1f} s at {_median(s for _, s in ours):.0f} steps; "
            f"SB3 solved {sum(t is not None for t, _ in sb3)}/{len(sb3)}, median {t_sb3:.1f} s "
            f"at {_median(s for _, s in sb3):.0f} steps; ours/SB3 time {t_ours / t_sb3:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
