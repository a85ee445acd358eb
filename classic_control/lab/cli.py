"""``python -m classic_control lab {gradients,importance,actor-critic,kl-penalty}``.

Every value is checked before any env is stepped; a bad one is one
``error: ...`` line and exit code 2 (raised as ``ConfigError``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from rlhf_pg.utils.io import atomic_write_text

from ..config import ConfigError
from ..envs import probe_env

EXPERIMENTS = ("gradients", "importance", "actor-critic", "kl-penalty")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="measure the lectures' claims: estimators, IS, actor-critic")
    exp = lab.add_subparsers(dest="experiment", required=True)

    g = exp.add_parser("gradients", help="variance, bias and cosine vs N of each PG estimator")
    _common(g, "gradients")
    g.add_argument(
        "--percents",
        type=int,
        nargs="+",
        default=[0, 5, 10],
        help="policies: PPO snapshots at these %% of its run (0 = random init)",
    )
    g.add_argument("--episodes", type=int, default=400, help="episodes per estimator pool")
    g.add_argument("--ref-episodes", type=int, default=600, help="episodes for the reference")
    g.add_argument("--fit-episodes", type=int, default=100, help="episodes to fit V(s)")

    i = exp.add_parser("importance", help="trajectory vs per-step importance weights vs horizon")
    _common(i, "importance")
    i.add_argument("--percent", type=int, default=10, help="PPO snapshot (%%) as the old policy")
    i.add_argument(
        "--horizons",
        type=int,
        nargs="+",
        default=[25, 50, 100, 200, 500],
        help="time limits (max_episode_steps)",
    )
    i.add_argument("--step-kl", type=float, default=0.01, help="mean KL(old || new) of the step")
    i.add_argument("--episodes", type=int, default=300, help="old-policy episodes per horizon")
    i.add_argument("--ref-episodes", type=int, default=400, help="new-policy episodes per horizon")
    i.add_argument("--fit-episodes", type=int, default=100, help="episodes to fit V per horizon")

    for name, what, seeds in (
        ("actor-critic", "one-step actor-critic vs REINFORCE and A2C on CartPole", 10),
        ("kl-penalty", "PPO with the adaptive KL penalty beside PPO-clip", 3),
    ):
        c = exp.add_parser(name, help=what)
        out = Path("results/lab") / name.replace("-", "_")
        c.add_argument("--out", type=Path, default=out, help="results folder")
        c.add_argument("--seeds", type=int, default=seeds, help="seeds 0..N-1")
        c.add_argument(
            "--steps",
            type=int,
            nargs="+",
            default=None,
            metavar="N",
            help="env-step budget per env, in the order of the defaults (default: the "
            "experiment's own)",
        )
        c.add_argument("--jobs", type=int, default=1, help="processes (the machine may be shared)")
        c.add_argument(
            "--eval-every",
            type=int,
            default=None,
            help="env steps between evals (default: the experiment's own)",
        )
        c.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")


def _common(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--out", type=Path, default=Path("results/lab") / name, help="results folder")
    p.add_argument("--env", default="CartPole-v1", dest="env_id", help="gymnasium env id")
    p.add_argument("--seed", type=int, default=0, help="seed of the PPO run and the sampling")
    p.add_argument(
        "--ppo-steps",
        type=int,
        default=None,
        help="budget of the PPO run the policies come from (default: its preset's)",
    )
    p.add_argument("--gamma", type=float, default=0.99, help="discount of the estimators")


def _at_least(args: argparse.Namespace, minimum: int, *names: str) -> None:
    for name in names:
        values = getattr(args, name)
        for v in values if isinstance(values, list) else [values]:
            if v is not None and v < minimum:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be >= {minimum}, got {v}")


def _check(args: argparse.Namespace) -> None:
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {str(args.out)!r} exists and is not a folder")
    if args.experiment in ("gradients", "importance"):
        from .sampling import check_fixed_policy
        from .snapshots import ppo_config

        if not 0.0 <= args.gamma <= 1.0:
            raise ConfigError(f"--gamma must be in [0, 1], got {args.gamma}")
        _at_least(args, 1, "ppo_steps")
        percents = args.percents if args.experiment == "gradients" else [args.percent]
        if any(not 0 <= p <= 100 for p in percents):
            raise ConfigError(f"percentages must be in 0..100, got {percents}")
        probe_env(args.env_id)
        check_fixed_policy(ppo_config(args.env_id, args.seed, args.ppo_steps))
    if args.experiment == "gradients":
        _at_least(args, 8, "episodes", "ref_episodes", "fit_episodes")
    if args.experiment == "importance":
        _at_least(args, 2, "episodes", "ref_episodes", "fit_episodes")
        _at_least(args, 1, "horizons")
        if not args.step_kl > 0:
            raise ConfigError(f"--step-kl must be > 0, got {args.step_kl}")
    if args.experiment in ("actor-critic", "kl-penalty"):
        _at_least(args, 1, "seeds", "jobs", "eval_episodes", "steps", "eval_every")
        envs = list(_curve_base(args).steps)
        if args.steps is not None and len(args.steps) != len(envs):
            raise ConfigError(
                f"--steps takes {len(envs)} value(s), one per env ({', '.join(envs)}); "
                f"got {len(args.steps)}"
            )
        from .curves import check

        check(_curve_settings(args), args.out)


def _curve_base(args: argparse.Namespace):
    from . import curves

    return curves.ACTOR_CRITIC if args.experiment == "actor-critic" else curves.KL_PENALTY


def cmd_lab(args: argparse.Namespace) -> int:
    _check(args)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    data = {
        "gradients": _gradients,
        "importance": _importance,
        "actor-critic": _curves,
        "kl-penalty": _curves,
    }[args.experiment](args)
    path = args.out / f"{args.experiment.replace('-', '_')}.json"
    atomic_write_text(path, json.dumps(data, indent=1))
    print(f"wrote {path} and the plots in {args.out}")
    return 0


def _gradients(args: argparse.Namespace) -> dict:
    from . import gradients, plots

    s = gradients.GradientSettings(
        env_id=args.env_id,
        seed=args.seed,
        percents=tuple(sorted(set(args.percents))),
        ppo_steps=args.ppo_steps,
        fit_episodes=args.fit_episodes,
        ref_episodes=args.ref_episodes,
        episodes=args.episodes,
        gamma=args.gamma,
    )
    data = gradients.run(s, args.out)
    plots.gradient_variance(data, args.out / "gradient_variance.png")
    plots.cosine_vs_batch(data, args.out / "cosine_vs_batch.png")
    plots.gae_lambda(data, args.out / "gae_lambda.png")
    return data


def _importance(args: argparse.Namespace) -> dict:
    from . import importance, plots

    s = importance.ImportanceSettings(
        env_id=args.env_id,
        seed=args.seed,
        percent=args.percent,
        ppo_steps=args.ppo_steps,
        step_kl=args.step_kl,
        horizons=tuple(sorted(set(args.horizons))),
        episodes=args.episodes,
        ref_episodes=args.ref_episodes,
        fit_episodes=args.fit_episodes,
        gamma=args.gamma,
    )
    data = importance.run(s, args.out)
    plots.importance(data, args.out / "importance.png")
    return data


def _curves(args: argparse.Namespace) -> dict:
    from . import curves, plots

    s = _curve_settings(args)
    data = curves.run(s, args.out)
    plots.seed_curves(args.out, args.out / f"{args.experiment.replace('-', '_')}_seeds.png")
    if args.experiment == "kl-penalty":
        plots.kl_controller(args.out, args.out / "kl_controller.png")
    return data


def _curve_settings(args: argparse.Namespace):
    base = _curve_base(args)
    steps = dict(base.steps) if args.steps is None else dict(zip(base.steps, args.steps))
    return dataclasses.replace(
        base,
        steps=steps,
        seeds=args.seeds,
        jobs=args.jobs,
        eval_every=args.eval_every or base.eval_every,
        eval_episodes=args.eval_episodes,
    )
