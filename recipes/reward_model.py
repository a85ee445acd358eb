"""Reward-model recipe: gold-labelled preference pairs -> TRL RewardTrainer (step 2 of RLHF).

    python recipes/reward_model.py --config recipes/configs/rm_sentiment.yaml --sft_path DIR
    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml \
        recipes/reward_model.py --config recipes/configs/rm_sentiment.yaml --sft_path DIR --use_cpu true

``--config FILE.yaml`` reads the settings from a file; every key is a field of
``rlhf_pg.stages.reward_model.RewardModelArgs`` (TRL's ``RewardConfig`` knobs under their
TRL names: ``lr_scheduler_type``, ``warmup_steps``, ``gradient_accumulation_steps``,
``bf16``, ``report_to``, ...) or of ``rlhf_pg.hf.hub.HubArgs`` (``push_to_hub``,
``hub_model_id``); flags override the file (``--help`` lists them). A config error exits
with status 2 and one line before any model is loaded. The saved folder holds a model
card (``README.md``).
"""

from __future__ import annotations

import json
import sys

from rlhf_pg.hf.hub import HubArgs, push_if_asked
from rlhf_pg.stages.reward_model import RewardModelArgs, train_reward_model
from rlhf_pg.utils.config import ConfigError, parse_recipe_args


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, hub = parse_recipe_args((RewardModelArgs, HubArgs), argv)
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
    code = 0
    if state.is_main_process:
        metrics = json.loads((path / "reward_metrics.json").read_text())
        print(f"reward model: {path}")
        print(f"held-out pairwise accuracy: {metrics['heldout_pairwise_accuracy']:.3f}")
        code = push_if_asked(path, hub, "reward model")
    state.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())
