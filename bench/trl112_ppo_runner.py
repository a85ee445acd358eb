"""TRL 1.12.0 PPO (``trl.experimental.ppo.PPOTrainer``) for the LM side-by-side benchmark.

Runs INSIDE the separate TRL 1.12 virtualenv that bench/lm_vs_trl.py creates (TRL 1.13+
deleted PPO), so it imports nothing from rlhf_pg: only torch, transformers, datasets, trl.
It trains the policy saved by bench/lm_bench_setup.py with TRL's four models (policy, a
frozen reference copy, a separate value model initialised from the reward model, the reward
model) and writes, as JSON: the wall seconds between consecutive optimisation steps, the
logged metrics, and the process's peak RSS. With ``--save-every`` it saves the policy every
N steps (for the held-out reward / gold / KL evaluation done by the caller).

    bench/.venv-trl112/bin/python bench/trl112_ppo_runner.py --policy DIR --reward DIR \
        --prompts prompts.json --steps 4 --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", required=True)
    p.add_argument("--reward", required=True)
    p.add_argument("--prompts", required=True, help="JSON list of prompt strings")
    p.add_argument("--steps", type=int, required=True, help="optimisation steps (64 completions)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--response-length", type=int, default=32)
    p.add_argument("--ppo-epochs", type=int, default=4)
    p.add_argument("--minibatches", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--kl-coef", type=float, default=0.05)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--save-early", type=int, default=0, help="also save at steps 1..N")
    p.add_argument("--save-dir", default="")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import datasets
    import transformers
    import trl
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as ppo_module

    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(args.policy, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(args.policy)
    ref = AutoModelForCausalLM.from_pretrained(args.policy)
    reward = AutoModelForSequenceClassification.from_pretrained(args.reward, num_labels=1)
    value = AutoModelForSequenceClassification.from_pretrained(args.reward, num_labels=1)
    with open(args.prompts) as f:
        prompts = json.load(f)
    ids = tokenizer(prompts)["input_ids"]
    dataset = datasets.Dataset.from_dict({"input_ids": ids})

    marks: list[float] = []
    logs: list[dict] = []
    # generated tokens per rollout: TRL logs no response length, so count the valid tokens of
    # the responses it truncates after EOS (the reward model's input), EOS included
    response_tokens: list[int] = []
    truncate = ppo_module.truncate_response

    def counting_truncate(stop_token_id, pad_token_id, responses):
        out = truncate(stop_token_id, pad_token_id, responses)
        response_tokens.append(int((out != pad_token_id).sum()))
        return out

    ppo_module.truncate_response = counting_truncate

    class Recorder(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            marks.append(time.perf_counter())

        def on_log(self, a, state, control, **kw):
            row = {k: v for k, v in (kw.get("logs") or {}).items() if isinstance(v, (int, float))}
            logs.append({"step": state.global_step, **row})

        def on_step_end(self, a, state, control, model=None, **kw):
            marks.append(time.perf_counter())
            step = state.global_step
            if args.save_every and (step % args.save_every == 0 or step <= args.save_early):
                model.policy.save_pretrained(os.path.join(args.save_dir, f"step-{step:04d}"))
                tokenizer.save_pretrained(os.path.join(args.save_dir, f"step-{step:04d}"))
                marks[-1] = time.perf_counter()  # saving is not part of the step

    with tempfile.TemporaryDirectory() as tmp:
        config = PPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1,
            num_mini_batches=args.minibatches,
            num_ppo_epochs=args.ppo_epochs,
            total_episodes=args.batch_size * args.steps,
            response_length=args.response_length,
            temperature=args.temperature,
            stop_token="eos",
            kl_coef=args.kl_coef,
            learning_rate=args.lr,
            local_rollout_forward_batch_size=args.batch_size,
            num_sample_generations=0,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            lr_scheduler_type="constant",
            disable_tqdm=True,
            seed=args.seed,
            bf16=False,
        )
        trainer = PPOTrainer(
            args=config,
            processing_class=tokenizer,
            model=policy,
            ref_model=ref,
            reward_model=reward,
            value_model=value,
            train_dataset=dataset,
            callbacks=[Recorder()],
        )
        if args.save_every:
            path = os.path.join(args.save_dir, "step-0000")
            policy.save_pretrained(path)
            tokenizer.save_pretrained(path)
        trainer.train()

    steps = [b - a for a, b in zip(marks, marks[1:])]
    # one truncate_response call per rollout (local_rollout_forward_batch_size = batch size)
    tokens = [float(t) for t in response_tokens[: len(steps)]]
    result = {
        "trainer": "trl112-ppo",
        "step_seconds": steps,
        "step_tokens": tokens,
        "completions_per_step": args.batch_size,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "logs": logs,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "datasets": datasets.__version__,
            "accelerate": __import__("accelerate").__version__,
        },
    }
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
