"""GRPO (or RLOO) on a prompt dataset with a reward function: what a TRL GRPOTrainer /
RLOOTrainer script becomes with rlhf-pg (docs/migrating-from-trl.md).

    python examples/grpo_rloo.py --model Qwen/Qwen2.5-0.5B-Instruct --dataset trl-lib/tldr
    python examples/grpo_rloo.py --estimator rloo --model ... --dataset ...
"""

import argparse

from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_pg.lm import PPOConfig, PPOTrainer
from rlhf_pg.tasks.datasets import load_any_dataset


def reward_len(prompts: list[str], completions: list[str]) -> list[float]:
    """Prefer completions of about 20 characters."""
    return [-abs(20 - len(c)) / 20 for c in completions]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct")
    parser.add_argument("--dataset", default="trl-lib/tldr")  # hub name, folder or file
    parser.add_argument("--estimator", choices=["grpo", "rloo"], default="grpo")
    parser.add_argument("--max_steps", type=int, default=100)
    parser.add_argument("--output_dir", default="runs/grpo-example")
    a = parser.parse_args(argv)

    prompts = load_any_dataset(a.dataset, "train")["prompt"]
    tokenizer = AutoTokenizer.from_pretrained(a.model, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(a.model)
    # TRL's names work as they are; kl_penalty / kl_estimator say where TRL puts beta's KL
    kl = {"grpo": ("loss", "k3"), "rloo": ("reward", "k1")}[a.estimator]
    config = PPOConfig(
        estimator=a.estimator,
        num_generations=4,
        per_device_train_batch_size=8,  # completions per micro-batch, as in TRL
        max_completion_length=16,
        beta=0.04,
        kl_penalty=kl[0],
        kl_estimator=kl[1],
        learning_rate=1e-6,
        max_steps=a.max_steps,
        output_dir=a.output_dir,
        overwrite_output_dir=True,
        report_to="none",
    )
    trainer = PPOTrainer(config, model, tokenizer, reward=reward_len, prompts=prompts)
    trainer.train()
    trainer.save_pretrained(f"{a.output_dir}/policy")
    trainer.end_training()


if __name__ == "__main__":
    main()
