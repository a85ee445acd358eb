"""The ``compare`` and ``report`` subcommands (wired into ``classic_control.__main__``).

Everything the user typed is checked, and every (algo, env) config resolved,
before the first run starts; a bad value is one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from rlhf_pg.utils.io import remove_stale_temporaries

from .. import rundir
from ..algos import ALGOS
from ..config import ConfigError
from ..envs import probe_env
from ..settings import resolve
from . import records

SB3_ALGOS = ("ppo", "a2c", "trpo", "ddpg", "td3", "sac")  # SB3 has no REINFORCE or A3C


def add_parsers(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "compare",
        help="multi-seed sweep: same budget and evaluation for every algorithm, with a report",
    )
    c.add_argument(
        "--algos",
        nargs="+",
        default=list(ALGOS),
        metavar="ALGO",
        help=f"any of {', '.join(ALGOS)} (default: all)",
    )
    c.add_argument(
        "--envs",
        nargs="+",
        default=["CartPole-v1"],
        metavar="ENV",
        help="gymnasium env ids (module:EnvId for your own)",
    )
    c.add_argument("--seeds", type=int, default=10, help="run seeds 0..N-1")
    c.add_argument("--steps", type=int, default=200_000, help="env-step budget of every run")
    c.add_argument("--jobs", type=int, default=2, help="CPU cores to use (A3C takes its workers)")
    c.add_argument("--eval-every", type=int, default=5000, help="env steps between evaluations")
    c.add_argument("--eval-episodes", type=int, default=10, help="deterministic episodes per eval")
    c.add_argument(
        "--baseline",
        choices=("sb3",),
        default=None,
        help="also run Stable-Baselines3 (+ sb3-contrib TRPO) under the same protocol "
        "(default: none)",
    )
    c.add_argument("--out", type=Path, default=Path("results/compare"), help="results folder")
    c.add_argument("--no-progress", action="store_true", help="hide the sweep progress bar")
    c.add_argument("--no-report", action="store_true", help="skip writing the report at the end")

    r = sub.add_parser("report", help="rebuild a compare report from the records of a results dir")
    r.add_argument("results_dir", type=Path, help="a results folder made by compare")
    r.add_argument("--out", type=Path, default=None, help="report folder (default RESULTS/report)")


def _check_args(args: argparse.Namespace) -> None:
    for name in ("seeds", "steps", "jobs", "eval_episodes"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.eval_every < 0:
        raise ConfigError(f"--eval-every must be >= 0, got {args.eval_every}")
    for algo in args.algos:
        if algo not in ALGOS:
            raise ConfigError(f"unknown algorithm {algo!r}; valid: {', '.join(ALGOS)}")
    for name in ("algos", "envs"):
        values = getattr(args, name)
        if len(set(values)) != len(values):
            raise ConfigError(f"--{name} lists a value twice: {' '.join(values)}")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {str(args.out)!r} exists and is not a folder")


def sb3_algos(algos: list[str]) -> list[str]:
    """The SB3 baselines for ``algos``; a clear error if the optional extra is missing."""
    missing = []
    for module, wanted in (("stable_baselines3", True), ("sb3_contrib", "trpo" in algos)):
        if not wanted:
            continue
        try:
            __import__(module)
        except ImportError:
            missing.append(module.replace("_", "-"))
    if missing:
        raise ConfigError(
            f"--baseline sb3 needs {', '.join(missing)} (not installed); install the extra with "
            "pip install 'stable-baselines3==2.9.2' 'sb3-contrib==2.9.2'"
        )
    return [f"sb3-{a}" for a in algos if a in SB3_ALGOS]


def cmd_compare(args: argparse.Namespace) -> int:
    from ..algos import REGISTRY
    from .sweep import plan, train_overrides

    _check_args(args)
    for env_id in args.envs:
        probe_env(env_id)
    protocol = {
        "steps": args.steps,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
    }
    specs = plan(args.algos, args.envs, args.seeds, args.steps, args.eval_every, args.eval_episodes)
    for spec in specs[: len(args.algos) * len(args.envs)]:  # each (algo, env) config once
        resolve(spec.algo, spec.env_id, train_overrides(spec))
        REGISTRY[spec.algo].check_env(probe_env(spec.env_id), spec.env_id)
    algos = list(args.algos)
    if args.baseline == "sb3":
        extra = sb3_algos(args.algos)
        skipped = sorted(set(args.algos) - set(SB3_ALGOS))
        if skipped:
            print(f"note: no SB3 baseline for {', '.join(skipped)} (SB3 has none)")
        algos += extra
        specs = plan(algos, args.envs, args.seeds, args.steps, args.eval_every, args.eval_episodes)
    with rundir.claim(args.out, "results folder"):  # one sweep per results folder
        records.check_manifest(args.out, protocol)
        # records and failure notes torn by a kill (the results folder's own: claim)
        for folder in [*args.out.glob("records/*/*"), args.out / "failed"]:
            if folder.is_dir():
                remove_stale_temporaries(folder)
        grid = {"algos": algos, "envs": args.envs, "seeds": list(range(args.seeds))}
        records.update_manifest(args.out, protocol, grid)
        print(
            f"sweep: {len(algos)} algos x {len(args.envs)} envs x {args.seeds} seeds = "
            f"{len(specs)} runs of {args.steps:,} env steps, {args.jobs} jobs -> {args.out}"
        )
        return _sweep(args, specs)


def _sweep(args: argparse.Namespace, specs: list) -> int:
    from .report import write_report
    from .sweep import run_sweep

    again = "re-run the same command to finish the sweep (finished runs are kept, "
    again += "interrupted ones resume)"
    try:
        result = run_sweep(specs, args.out, jobs=args.jobs, show_progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted; {again}", file=sys.stderr)
        return 130
    print(
        f"{len(result.finished)} runs finished, {len(result.skipped)} already had records, "
        f"{len(result.failed)} failed" + (" (see failed/)" if result.failed else "")
    )
    if result.stopped:
        print(f"terminated; {len(result.interrupted)} runs saved a checkpoint; {again}")
        return 128 + signal.SIGTERM
    if not args.no_report:
        print(f"report: {write_report(args.out)}")
    return 1 if result.failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    if not args.results_dir.is_dir():
        problem = "is not a folder" if args.results_dir.exists() else "does not exist"
        raise ConfigError(f"results dir {str(args.results_dir)!r} {problem}")
    out = args.out
    if out is not None:  # checked before the records are read and plotted
        above = next((p for p in [out, *out.parents] if p.exists()), None)
        if above is not None and not above.is_dir():
            raise ConfigError(f"--out {str(out)!r}: {str(above)!r} is a file, not a folder")
    print(f"report: {write_report(args.results_dir, args.out)}")
    return 0
