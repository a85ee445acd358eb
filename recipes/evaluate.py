"""Evaluation recipe: a policy on fixed held-out prompts (gold score, proxy reward, KL, accuracy).

    python recipes/evaluate.py --config recipes/configs/eval_sentiment.yaml \
        --model_path DIR --reference_path SFT_DIR --reward_model_path RM_DIR
    python recipes/evaluate.py --config recipes/configs/eval_arithmetic.yaml --model_path DIR
    python recipes/evaluate.py --config recipes/configs/eval_chat_arithmetic.yaml --model_path DIR

Every key of the YAML is a field of ``rlhf_pg.stages.evaluate.EvalArgs``; flags override the
YAML. The metrics are those the PPO stage reports during training (the same function).
A config error exits with status 2 and one line before any model is loaded.
"""

from __future__ import annotations

import json
import sys

from rlhf_pg.stages.evaluate import EvalArgs, run_evaluation
from rlhf_pg.utils.config import ConfigError, parse_recipe_args


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_recipe_args(EvalArgs, argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        result = run_evaluation(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
