"""SFT recipe: train a causal LM on a corpus or a dataset (step 1 of RLHF).

    python recipes/sft.py --config recipes/configs/sft_sentiment.yaml [--max_steps 800 ...]
    python recipes/sft.py --task dataset --dataset_name DIR_OR_HUB_NAME \
        --model_name_or_path MODEL --per_device_train_batch_size 8 --output_dir runs/sft
    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml \
        recipes/sft.py --config recipes/configs/sft_sentiment.yaml --use_cpu true

``--config FILE.yaml`` reads the settings from a file; every key is a field of
``rlhf_pg.stages.sft.SFTArgs`` (TRL's ``SFTConfig`` names work too) or of
``rlhf_pg.hf.hub.HubArgs`` (``push_to_hub``, ``hub_model_id``); flags override the file
(``--help`` lists them). A dataset (text, ``messages`` or ``prompt``/``completion``
columns) trains with TRL's SFTTrainer. A config error exits with status 2 and one line
before any model is loaded. The saved folder holds a model card (``README.md``).
"""

from __future__ import annotations

import sys

from rlhf_pg.hf.hub import HubArgs, push_if_asked
from rlhf_pg.stages.sft import SFTArgs, train_sft
from rlhf_pg.utils.config import ConfigError, parse_recipe_args


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, hub = parse_recipe_args((SFTArgs, HubArgs), argv)
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
    code = 0
    if state.is_main_process:
        print(f"SFT model: {path}")
        code = push_if_asked(path, hub, "SFT model")
    state.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())
