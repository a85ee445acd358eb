"""The ``rlhf-pg`` command.

    rlhf-pg demo [--task sentiment|chat-arithmetic] [--out runs/demo] [--seed 0]
                 [--config demo.yaml] [--threads N]

``demo`` runs an offline pipeline end to end and prints where the report is: ``sentiment``
(the default: SFT -> reward model -> PPO -> report, settings from
``recipes/configs/{sft,rm,ppo}_sentiment.yaml``) or ``chat-arithmetic`` (SFT of a tiny Qwen2
on conversations -> GRPO, RLOO and PPO with an exact-match reward on the dataset's answer
column -> report, settings from ``recipes/configs/*_chat_arithmetic.yaml``). ``--config``
takes a YAML file of :class:`rlhf_pg.demo.DemoConfig` fields: run-level settings and per-stage overrides,
e.g. ``ppo: {max_steps: 20}``; flags win over it. A bad config exits with status 2 and
one line before any stage runs.

Torch's thread count: ``--threads``, else the config's ``num_threads``, else
``$OMP_NUM_THREADS``, else the physical cores this process may use
(:mod:`rlhf_pg.utils.threads`).
"""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlhf-pg", description="Policy-gradient RLHF on one tested core."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run an offline pipeline end to end (sentiment: SFT, reward model, PPO, report; "
        "chat-arithmetic: SFT, GRPO, RLOO, PPO with a verifiable reward, report)",
    )
    demo.add_argument(
        "--task",
        choices=["sentiment", "chat-arithmetic"],
        default=None,
        help="offline task (default sentiment)",
    )
    demo.add_argument("--out", default=None, help="output folder (default runs/demo)")
    demo.add_argument("--seed", type=int, default=None, help="seed of every stage (default 0)")
    demo.add_argument(
        "--config", default=None, help="YAML file of DemoConfig fields (e.g. ppo: {max_steps: 20})"
    )
    demo.add_argument("--cache-dir", default=None, help="cache of SFT / reward models")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch threads (default: num_threads of --config, else $OMP_NUM_THREADS, "
        "else the physical cores available)",
    )
    return parser


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer (e.g. 2)")
    return int(text)


def demo_config(ns: argparse.Namespace):
    """A checked DemoConfig from the YAML file (if any) and the flags."""
    from .demo.pipeline import DemoConfig
    from .utils.config import config_from_dict, load_yaml_config
    from .utils.threads import resolve_threads

    values = load_yaml_config(ns.config, DemoConfig) if ns.config else {}
    flags = (("task", ns.task), ("out", ns.out), ("seed", ns.seed), ("cache_dir", ns.cache_dir))
    for key, value in flags:
        if value is not None:
            values[key] = value
    if ns.no_progress:
        values["progress"] = False
    if ns.threads is not None:
        values["num_threads"] = ns.threads
    cfg = config_from_dict(DemoConfig, values)
    resolve_threads(cfg.num_threads)  # a bad $OMP_NUM_THREADS stops here, in one line
    return cfg


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    from .utils.config import ConfigError

    try:
        cfg = demo_config(ns)
    except ConfigError as err:
        print(f"rlhf-pg: error: {err}", file=sys.stderr)
        return 2
    from .demo.pipeline import run_demo

    summary = run_demo(cfg)
    print(f"\nReport: {summary['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
