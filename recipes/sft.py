"""SFT recipe: train a causal LM on a corpus (step 1 of RLHF).

    python recipes/sft.py --config recipes/configs/sft_sentiment.yaml [--max_steps 800 ...]
    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml \
        recipes/sft.py --config recipes/configs/sft_sentiment.yaml --use_cpu true

Every key of the YAML is a field of ``rlhf_pg.stages.sft.SFTArgs``; flags override the YAML.
A config error exits with status 2 and one line before any model is loaded.
"""

from __future__ import annotations

import sys

from rlhf_pg.stages.sft import SFTArgs, train_sft
from rlhf_pg.utils.config import ConfigError, parse_recipe_args


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_recipe_args(SFTArgs, argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        path = train_sft(cfg)
    except ConfigError as err:  # an unwritable output folder, a dataset without the column
        print(f"error: {err}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        print(f"SFT model: {path}")
    state.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
