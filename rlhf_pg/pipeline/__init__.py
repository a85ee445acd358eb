"""The RLHF pipeline on top of ``rlhf_pg.lm``: the PPO stage of the recipes, the offline demo
(SFT -> reward model -> PPO -> report) and its report.

    from rlhf_pg.pipeline import DemoConfig, run_demo
    run_demo(DemoConfig(out="runs/demo"))
"""

from .args import PPORecipeArgs, parse_ppo_args
from .demo import DemoConfig, run_demo
from .ppo import run_ppo, summarize
from .report import write_report

__all__ = [
    "DemoConfig",
    "PPORecipeArgs",
    "parse_ppo_args",
    "run_demo",
    "run_ppo",
    "summarize",
    "write_report",
]
