"""Command line: ``python -m classic_control {train,eval,envs,compare,report,lab} ...``.

Bad input (unknown env, algorithm or config key, invalid hyperparameters,
a folder that is not a run) ends with one ``error: ...`` line and exit code 2,
before any env is stepped. A deprecated setting name (``--lr``, ``lr:`` in a
YAML file or a saved run) still works, with one ``warning: ...`` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import warnings
from pathlib import Path

from . import rundir
from .algos import ALGOS
from .compare.cli import add_parsers as add_compare_parsers
from .compare.cli import cmd_compare, cmd_report
from .config import Config, ConfigError, available_presets
from .envs import EnvSpec, probe_env
from .flags import (
    OLD_PREFIX,
    Parser,
    add_config_flags,
    config_flag_help,
    flag_name,
    rename_old_flags,
)
from .lab.cli import add_parsers as add_lab_parsers
from .lab.cli import cmd_lab
from .lifetime import stop_on_sigterm
from .settings import describe_sources, resolve_with_sources


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="classic_control",
        description="REINFORCE, A2C, A3C, PPO, TRPO, DDPG, TD3 and SAC on gymnasium tasks, "
        "built on rlhf_pg.core.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an agent (or resume a run)")
    fields = {f.name: f for f in dataclasses.fields(Config)}
    t.add_argument("--algo", default=None, help=f"one of {', '.join(ALGOS)} (default: ppo)")
    t.add_argument(
        "--env",
        default=None,
        dest="env_id",
        help="gymnasium env id, or module:EnvId to import module (on PYTHONPATH) first, "
        "which registers your own env (default: CartPole-v1)",
    )
    for name, flag in (("seed", "--seed"), ("total_steps", "--steps")):
        kwargs = {"type": int, "default": None, "dest": name}
        text = config_flag_help(fields[name])
        if name == "total_steps":
            text += "; with --resume, a larger budget to train the run on to"
        t.add_argument(flag, help=text, **kwargs)
    t.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder (default: runs/<env>_<algo>_s<seed>_<time>)",
    )
    t.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file of settings, over the preset and under the flags (default: none)",
    )
    t.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue an interrupted run with its saved config (default: none, a new run)",
    )
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_flags(t)

    e = sub.add_parser("eval", help="evaluate a run's policy deterministically")
    e.add_argument("run_dir", type=Path, help="a run folder made by train")
    e.add_argument("--episodes", type=int, default=10, help="deterministic episodes")
    e.add_argument(
        "--model", choices=("final", "best"), default="final", help="which saved model to score"
    )
    e.add_argument(
        "--video",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="record one episode (.gif, or .mp4 if imageio-ffmpeg is installed; "
        "default: no video, RUN_DIR/video.gif when given without a path)",
    )

    sub.add_parser("envs", help="list registered env ids and bundled presets")
    add_compare_parsers(sub)  # compare, report
    add_lab_parsers(sub)  # lab gradients | importance | actor-critic | kl-penalty
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        return _resume(args)
    from .trainer import Trainer

    rename_old_flags(args)
    fields = {f.name for f in dataclasses.fields(Config)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    for key in ("algo", "env_id"):  # given by --algo / --env, never by the config file
        overrides.pop(key, None)
    cfg, preset, sources = resolve_with_sources(
        args.algo or "ppo", args.env_id or "CartPole-v1", overrides, config_file=args.config
    )
    spec = _check_env(cfg)  # unknown id or spaces the algorithm cannot use: fail before training
    run_dir = args.out or rundir.default_run_dir(cfg)
    with rundir.claim(run_dir):  # a file, an unwritable or a busy --out fails here
        if (run_dir / rundir.CHECKPOINT).exists():
            raise ConfigError(
                f"{str(run_dir)!r} already holds a run; continue it with --resume {run_dir} "
                "or choose another --out"
            )
        print(f"run dir {run_dir} (preset: {preset or 'none'})")
        print("settings:\n" + "\n".join(describe_sources(cfg, sources)))
        return _run(Trainer(cfg, run_dir, spec), resume=False, show=not args.no_progress)


def _resume(args: argparse.Namespace) -> int:
    from .trainer import Trainer

    # the saved config is what makes a resumed run equal an uninterrupted one
    # (--steps is the one exception: it extends the budget, see _extend_budget)
    names = {f.name: f.name for f in dataclasses.fields(Config) if f.name != "total_steps"}
    names.update({"env_id": "env", "out": "out", "config": "config"})
    names.update({OLD_PREFIX + old: old for old in Config.ALIASES})
    given = sorted(
        flag_name(flag) for k, flag in names.items() if getattr(args, k, None) is not None
    )
    if given:
        raise ConfigError(
            f"--resume continues {str(args.resume)!r} with its saved config; drop "
            f"{', '.join(given)} (start a new run with --out to change them)"
        )
    run_dir = args.resume
    cfg = rundir.read_config(run_dir)
    with rundir.claim(run_dir):
        # fail early on a missing, unreadable or other run's checkpoint
        state = rundir.load_checkpoint(run_dir)
        rundir.check_checkpoint(run_dir, state, cfg)
        if args.total_steps is not None:
            cfg = _extend_budget(cfg, args.total_steps, int(state["progress"]["env_steps"]))
        trainer = Trainer(cfg, run_dir, _check_env(cfg))
        print(f"resuming {run_dir} at {cfg.env_id} / {cfg.algo}")
        return _run(trainer, resume=True, show=not args.no_progress)


def _extend_budget(cfg: Config, total_steps: int, done: int) -> Config:
    """``cfg`` with a larger env-step budget, for ``--resume RUN --steps N``: train a finished
    (or interrupted) run on to ``N`` steps. Allowed only when nothing in the run is scheduled
    over its budget: with a constant learning rate and clip range the extended run takes the
    same updates as one started with ``--steps N`` (its rollouts, optimiser state and RNG all
    continue from the checkpoint), so the evaluations of the first budget stay valid. (An
    off-policy run whose old budget ended inside a collection chunk had that chunk cut short,
    which a run started with ``N`` would not have.)"""
    if total_steps <= cfg.total_steps:
        raise ConfigError(
            f"--steps {total_steps} with --resume extends a run; it must exceed the run's "
            f"budget of {cfg.total_steps} steps ({done} done)"
        )
    scheduled = [name for name in ("anneal_lr", "anneal_clip") if getattr(cfg, name, False)]
    if scheduled:
        raise ConfigError(
            f"--steps cannot extend this run: its {' and '.join(scheduled)} schedule spans "
            f"total_steps={cfg.total_steps}, so a longer budget would change the updates "
            "already taken; start a new run with --steps instead"
        )
    print(f"extending the budget from {cfg.total_steps} to {total_steps} env steps")
    return dataclasses.replace(cfg, total_steps=total_steps)


def _check_env(cfg: Config) -> EnvSpec:
    """The env's spaces; one line for an unknown id, a module that does not import, env_kwargs
    the env does not take, or spaces the algorithm cannot use."""
    from .algos import REGISTRY

    spec = probe_env(cfg.env_id, **cfg.env_options())
    REGISTRY[cfg.algo].check_env(spec, cfg.env_id)
    return spec


def _run(trainer, *, resume: bool, show: bool) -> int:
    hint = f"continue with: python -m classic_control train --resume {trainer.run_dir}"
    try:
        with stop_on_sigterm(trainer.request_stop):
            result = trainer.train(resume=resume, show_progress=show)
    except KeyboardInterrupt:
        print(f"\ninterrupted; {hint}", file=sys.stderr)
        return 130
    finally:
        trainer.close()
    if result is None and trainer.stop_requested:
        if (trainer.run_dir / rundir.CHECKPOINT).exists():
            print(f"terminated at {trainer.env_steps} env steps, checkpoint saved; {hint}")
        else:  # stopped before its first update
            print(f"terminated before the first update; nothing to resume in {trainer.run_dir}")
        return 128 + signal.SIGTERM
    print(_format_eval(result))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .algos import REGISTRY
    from .envs import ObsNormalizer
    from .evaluate import Evaluator, record_video, summary

    cfg = rundir.read_config(args.run_dir)
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    model = args.run_dir / (rundir.MODEL_FINAL if args.model == "final" else rundir.MODEL_BEST)
    if not model.is_file():
        raise ConfigError(f"{str(args.run_dir)!r} has no {model.name} (has training finished?)")
    video = None
    if args.video is not None:  # checked before the (slower) evaluation
        video = rundir.check_writable_file(
            Path(args.video) if args.video else args.run_dir / "video.gif", "--video"
        )
    spec = probe_env(cfg.env_id, **cfg.env_options())
    agent = REGISTRY[cfg.algo].build_agent(spec, cfg)
    obs_norm = ObsNormalizer(spec.obs_dim, cfg.norm_obs)
    obs_norm.rms.load_state_dict(rundir.load_model(model, agent))
    with rundir.claim(args.run_dir):  # eval.json is the run's: not while it trains
        evaluator = Evaluator(cfg.env_id, spec, args.episodes, cfg.seed, **cfg.env_options())
        result = summary(*evaluator.run(agent, obs_norm))
        evaluator.close()
        # keep what training recorded (env_steps, best_eval_return, train_time_s, ...)
        previous = {k: v for k, v in rundir.read_eval(args.run_dir).items() if k != "video"}
        result = {**previous, **result}
        result.update(algo=cfg.algo, env_id=cfg.env_id, seed=cfg.seed, model=model.name)
        if video is not None:
            path = record_video(
                cfg.env_id, spec, agent, obs_norm, video, cfg.seed, **cfg.env_options()
            )
            result["video"] = str(path)
        rundir.write_eval(args.run_dir, result)
    print(_format_eval(result))
    return 0


def cmd_envs(_: argparse.Namespace) -> int:
    import gymnasium as gym

    print("registered env ids:")
    print("  " + "\n  ".join(sorted(gym.registry.keys())))
    print("bundled presets (algo_env):")
    print("  " + "\n  ".join(available_presets()))
    print("an env your own module registers: --env module:EnvId (module on PYTHONPATH)")
    return 0


def _format_eval(result: dict | None) -> str:
    if result is None:
        return "stopped before the end of the run"
    line = (
        f"eval {result['env_id']} {result['algo']}: mean return {result['mean_return']:.1f} "
        f"+- {result['std_return']:.1f} over {result['episodes']} deterministic episodes"
    )
    if result.get("video"):
        line += f"; video {result['video']}"
    return line


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    handlers = {
        "train": cmd_train,
        "eval": cmd_eval,
        "envs": cmd_envs,
        "compare": cmd_compare,
        "report": cmd_report,
        "lab": cmd_lab,
    }
    try:
        args = build_parser().parse_args(argv)
        return handlers[args.command](args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
