"""PPO (or REINFORCE / RLOO / GRPO with ``--estimator``) on a causal LM against a reward model,
a reward function (built-in or your own), or a weighted sum of both.

    # your own prompt dataset (a prompt column of strings or conversations) and reward function
    python recipes/ppo.py --task dataset --model_name_or_path path/to/chat-model \
        --dataset_name data/ --dataset_test_split test --reward_fn my_rewards.py:correct \
        --estimator grpo --samples_per_prompt 4 --output_dir runs/my_grpo
    python recipes/ppo.py --config recipes/configs/ppo_sentiment.yaml
    python recipes/ppo.py --config recipes/configs/grpo_arithmetic.yaml --seed 1
    python recipes/ppo.py --config recipes/configs/ppo_sentiment.yaml --save_every 10
    python recipes/ppo.py --config recipes/configs/ppo_sentiment.yaml \
        --resume_from_checkpoint runs/ppo_sentiment/checkpoint-000010
    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml recipes/ppo.py \
        --config recipes/configs/ppo_sentiment.yaml --output_dir runs/ppo_sentiment_ddp

``--config FILE.yaml`` reads the settings from a file; every key is a field of
``PPORecipeArgs`` (rlhf_pg/stages/ppo_args.py), of ``PPOConfig`` (rlhf_pg/lm/config.py;
TRL's GRPOConfig / RLOOConfig names work too: ``num_generations``, ``beta``,
``loss_type``, ...) or of ``HubArgs`` (``push_to_hub``, ``hub_model_id``); any of them can
be overridden as ``--key value`` (``--help`` lists them).
A config error exits with status 2 and one line before any model is loaded. The run's
history and held-out evaluations go to ``<output_dir>/ppo_results.json``, the per-step
metrics to ``<output_dir>/metrics.jsonl``, checkpoints to ``<output_dir>/checkpoint-*``, the
evaluations' completions to ``<output_dir>/completions.jsonl``. Bad data (a missing column,
a wrong prompt type, conversations without a chat template, a reward function that does not
import or needs a missing column) is also one line with status 2, before any model loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rlhf_pg.hf.hub import HubArgs, push_if_asked
from rlhf_pg.lm import PPOConfig
from rlhf_pg.stages.ppo import run_ppo, summarize
from rlhf_pg.stages.ppo_args import PPORecipeArgs
from rlhf_pg.utils.config import ConfigError, parse_recipe_args


def main(argv: list[str] | None = None) -> int:
    try:
        args, config, hub = parse_recipe_args((PPORecipeArgs, PPOConfig, HubArgs), argv)
        if hub.push_to_hub and not (args.save_policy and config.output_dir):
            raise ConfigError("push_to_hub needs save_policy true and an output_dir to save to")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        results = run_ppo(args, config)
    except ConfigError as err:  # a used or busy output_dir, a bad checkpoint to resume from
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = summarize(results, args.task)
    print(" ".join(f"{k}={v:.4g}" for k, v in summary.items()))
    if config.output_dir:
        print(f"results: {config.output_dir}/ppo_results.json")
    from accelerate import PartialState

    if config.output_dir and PartialState().is_main_process:  # one upload, not one per process
        return push_if_asked(Path(config.output_dir) / "policy", hub, "PPO policy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
