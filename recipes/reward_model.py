"""Reward-model recipe: gold-labelled preference pairs -> TRL RewardTrainer (step 2 of RLHF).

    python recipes/reward_model.py --config recipes/configs/rm_sentiment.yaml --sft_path DIR
    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml \
        recipes/reward_model.py --config recipes/configs/rm_sentiment.yaml --sft_path DIR --use_cpu true

Every key of the YAML is a field of ``rlhf_pg.stages.reward_model.RewardModelArgs``; flags
override the YAML. A config error exits with status 2 and one line before any model is
loaded.
"""

from __future__ import annotations

import json
import sys

from rlhf_pg.stages.reward_model import RewardModelArgs, train_reward_model
from rlhf_pg.utils.config import ConfigError, parse_recipe_args


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_recipe_args(RewardModelArgs, argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        path = train_reward_model(cfg)
    except ConfigError as err:  # an unwritable output folder, a dataset without the columns
        print(f"error: {err}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        metrics = json.loads((path / "reward_metrics.json").read_text())
        print(f"reward model: {path}")
        print(f"held-out pairwise accuracy: {metrics['heldout_pairwise_accuracy']:.3f}")
    state.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
