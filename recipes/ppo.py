"""PPO (or REINFORCE / RLOO / GRPO with ``--estimator``) on a causal LM against a reward model,
a built-in reward callable, or a weighted sum of both.

    python recipes/ppo.py --config recipes/configs/ppo_sentiment.yaml
    python recipes/ppo.py --config recipes/configs/grpo_arithmetic.yaml --seed 1
    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml recipes/ppo.py \
        --config recipes/configs/ppo_sentiment.yaml --output_dir runs/ppo_sentiment_ddp

Every YAML key is a field of ``PPORecipeArgs`` (rlhf_pg/pipeline/args.py) or of
``PPOConfig`` (rlhf_pg/lm/config.py); any of them can be overridden as ``--key value``.
An unknown key or a bad value stops the script before any model is loaded.
"""

from __future__ import annotations

import sys

from rlhf_pg.stages.ppo import run_ppo, summarize
from rlhf_pg.stages.ppo_args import parse_ppo_args
from rlhf_pg.utils.config import ConfigError


def main(argv: list[str] | None = None) -> dict:
    try:
        args, config = parse_ppo_args(argv)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    results = run_ppo(args, config)
    summary = summarize(results, args.task)
    print(" ".join(f"{k}={v:.4g}" for k, v in summary.items()))
    if config.output_dir:
        print(f"results: {config.output_dir}/ppo_results.json")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
