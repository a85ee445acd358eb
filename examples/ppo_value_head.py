"""PPO with a value head against a reward model, in a loop you write yourself: what a script
for TRL's removed PPOTrainer / AutoModelForCausalLMWithValueHead becomes with rlhf-pg
(docs/migrating-from-trl.md).

    python examples/ppo_value_head.py --model SFT_FOLDER --reward_model RM_FOLDER --dataset DATA
"""

import argparse

from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_pg.hf import load_reward_model
from rlhf_pg.lm import PPOConfig, PPOTrainer
from rlhf_pg.tasks.datasets import load_any_dataset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)  # the SFT model
    parser.add_argument("--reward_model", required=True)  # a sequence classifier
    parser.add_argument("--reward_label", default=None)  # several labels: the one to maximise
    parser.add_argument("--dataset", required=True)  # a "prompt" column
    parser.add_argument("--max_steps", type=int, default=100)
    a = parser.parse_args(argv)

    prompts = load_any_dataset(a.dataset, "train")["prompt"]
    tokenizer = AutoTokenizer.from_pretrained(a.model, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(a.model)  # the value head is added inside
    reward_model = load_reward_model(a.reward_model, label=a.reward_label)
    config = PPOConfig(
        estimator="ppo",
        batch_size=8,  # prompts per step
        num_mini_batches=2,  # TRL's old PPOConfig names work too
        num_ppo_epochs=4,
        cliprange=0.2,
        cliprange_value=0.2,
        vf_coef=0.1,
        kl_coef=0.05,
        response_length=24,
        learning_rate=1.41e-5,
    )
    trainer = PPOTrainer(config, policy, tokenizer)  # reference: a frozen copy of the policy
    for step in range(a.max_steps):
        batch = [prompts[(step * 8 + i) % len(prompts)] for i in range(8)]
        rollout = trainer.generate(batch)  # completions, log-probs, values, reference log-probs
        scores = reward_model(rollout.prompts, rollout.completions)
        stats = trainer.step(rollout, scores)
        print(step, f"reward {stats['score/mean']:.3f}  KL {stats['kl/seq']:.3f}")
    trainer.save_pretrained("runs/ppo-example/policy")


if __name__ == "__main__":
    main()
