"""``rlhf-pg demo``: the offline sentiment pipeline (SFT -> reward model -> PPO -> report).

from rlhf_pg.demo import DemoConfig, run_demo
run_demo(DemoConfig(out="runs/demo"))
"""

from .pipeline import DemoConfig, run_demo
from .report import write_report

__all__ = ["DemoConfig", "run_demo", "write_report"]
