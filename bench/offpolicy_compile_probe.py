"""Does ``torch.compile`` make an off-policy gradient step faster on this CPU? Eager vs compiled.

Builds the trainer of ``<algo>_<env>.yaml`` (its networks, batch size and
optimisers), fills the replay buffer with random warm-up steps, then times the
algorithm's own ``train_step`` in alternating rounds on the same minibatches,
one torch thread, three ways: as written (eager); with the networks compiled
(``nn.Module.compile`` on the actor, the critics and their targets, in a
second trainer built from the same seed); and (DDPG, TD3) with the whole step
wrapped in ``torch.compile`` (targets, losses, backward passes, optimiser
steps, Polyak averaging; TorchDynamo splits it where it must). SAC's whole
step does not compile: its two backward passes through one actor sample
fail in the compiled graph. Prints milliseconds per gradient step (median
and range over rounds) and each variant's time over eager.

    python bench/offpolicy_compile_probe.py td3 Pendulum-v1
    python bench/offpolicy_compile_probe.py sac Pendulum-v1 --rounds 5
    python bench/offpolicy_compile_probe.py td3 Pendulum-v1 --profile   # where eager spends it
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classic_control.config import ConfigError  # noqa: E402
from classic_control.settings import resolve  # noqa: E402
from classic_control.trainer import Trainer  # noqa: E402
from rlhf_pg.core import finite_checks  # noqa: E402

WARMUP_ENV_STEPS = 2_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("algo", choices=["ddpg", "td3", "sac"])
    p.add_argument("env_id")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (default 5)")
    p.add_argument("--steps", type=int, default=200, help="gradient steps per round (default 200)")
    p.add_argument("--mode", default="default", help="torch.compile mode (default 'default')")
    p.add_argument(
        "--profile", action="store_true", help="also print the torch profiler's op table of eager"
    )
    args = p.parse_args()
    for name in ("rounds", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(1)
    overrides = {"total_steps": WARMUP_ENV_STEPS, "num_steps": WARMUP_ENV_STEPS}
    overrides.update(learning_starts=WARMUP_ENV_STEPS, eval_every=0, checkpoint_every=0)
    with tempfile.TemporaryDirectory() as d, finite_checks(False):
        try:  # an unknown env or a discrete one: one line, exit 2
            cfg, preset = resolve(args.algo, args.env_id, overrides)
            trainer = Trainer(cfg, Path(d) / "eager")
        except ConfigError as e:
            p.error(str(e))
        nets_trainer = Trainer(cfg, Path(d) / "nets")  # same seed: same init, same buffer
        steps = {"eager": trainer.algo.train_step, "compiled nets": nets_trainer.algo.train_step}
        agent = nets_trainer.agent
        for net in (agent.actor, agent.critic, agent.critic_target, agent.actor_target):
            if net is not None:
                net.compile(mode=args.mode, dynamic=False)
        if args.algo != "sac":
            steps["compiled step"] = torch.compile(
                trainer.algo.train_step, mode=args.mode, dynamic=False
            )
        for t in (trainer, nets_trainer):
            t.collector.collect()  # random warm-up: fills the buffer, no gradient step
        torch.manual_seed(cfg.seed)
        batches = [trainer.collector.buffer.sample(cfg.batch_size) for _ in range(args.steps)]
        for name, step in steps.items():  # compile, and warm every variant, outside the clock
            start = time.process_time()
            for b in batches[:20]:
                step(b)
            print(
                f"{name}: first 20 steps (with compiling) {time.process_time() - start:.1f} CPU s"
            )
        ms: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                start = time.process_time()
                for b in batches:
                    step(b)
                ms[name].append((time.process_time() - start) / args.steps * 1e3)
        if args.profile:
            with torch.profiler.profile() as prof:
                for b in batches:
                    steps["eager"](b)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        trainer.close()
        nets_trainer.close()
    print(f"{args.algo} {args.env_id} ({preset}), batch {cfg.batch_size}, nets {cfg.hidden_sizes}")
    eager = statistics.median(ms["eager"])
    for name, v in ms.items():
        med = statistics.median(v)
        print(
            f"{name:>13}: {med:.2f} ms per gradient step (min {min(v):.2f}, max {max(v):.2f}), "
            f"{med / eager:.2f} of eager"
        )


if __name__ == "__main__":
    main()
