"""SFT on a dataset (text, conversations or prompt/completion) through TRL's SFTTrainer, with
TRL's SFTConfig names: what a TRL SFT script becomes with rlhf-pg's SFT stage.

    python examples/sft_dataset.py --model Qwen/Qwen2.5-0.5B --dataset trl-lib/Capybara
"""

import argparse

from rlhf_pg.stages.sft import SFTArgs, train_sft


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B")
    parser.add_argument("--dataset", default="trl-lib/Capybara")
    parser.add_argument("--max_steps", type=int, default=500)
    parser.add_argument("--output_dir", default="runs/sft-example")
    a = parser.parse_args(argv)

    cfg = SFTArgs(
        task="dataset",
        dataset_name=a.dataset,
        model_name_or_path=a.model,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        learning_rate=2e-5,
        lr_scheduler_type="linear",
        max_length=512,
        max_steps=a.max_steps,
        output_dir=a.output_dir,
    )
    print("saved:", train_sft(cfg))  # weights, tokenizer, sft_metrics.json, README.md (card)


if __name__ == "__main__":
    main()
