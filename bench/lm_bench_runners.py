"""One trainer per process for the LM side-by-side benchmark (bench/lm_vs_trl.py): ours
(rlhf_pg.lm PPO / RLOO / GRPO) and TRL 1.16's GRPOTrainer / RLOOTrainer, from the project's
virtualenv. (TRL 1.12 PPO runs from its own virtualenv: bench/trl112_ppo_runner.py.)

Each run loads the policy, reward model and prompts written by bench/lm_bench_setup.py,
trains ``--steps`` optimisation steps of 64 completions, and writes JSON: the wall seconds
and generated tokens of every step, the logged metrics, and this process's peak RSS. With
``--save-every`` the policy is saved every N steps for the held-out evaluation.

    python bench/lm_bench_runners.py --trainer ours-ppo --policy DIR --reward DIR \
        --prompts prompts.json --steps 4 --out result.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import tempfile
import time
from pathlib import Path

TRAINERS = (
    "ours-ppo",
    "ours-ppo-critic",
    "ours-rloo",
    "ours-grpo",
    "trl116-grpo",
    "trl116-rloo",
    "trl116-grpo-b0",
)
GROUP = 4  # generations per prompt for RLOO / GRPO


def ours_config(name: str, args):
    """PPOConfig of ours with the settings of the TRL trainer it is compared with: where both
    expose a knob it gets TRL's value (Adam eps 1e-8; grad clipping as TRL does it)."""
    from rlhf_pg.lm import PPOConfig

    common = dict(
        max_new_tokens=args.response_length,
        temperature=args.temperature,
        learning_rate=args.lr,
        adam_eps=1e-8,
        kl_coef=args.kl_coef,
        num_minibatches=args.minibatches,
        max_steps=args.steps,
        seed=args.seed,
        use_cpu=True,
        progress_bar=False,
    )
    if name.startswith("ours-ppo"):
        # as TRL 1.12 PPO: value head + GAE, k1 KL in the reward, 4 epochs, no grad clipping
        return PPOConfig(
            estimator="ppo",
            batch_size=args.batch_size,
            update_epochs=args.ppo_epochs,
            max_grad_norm=0.0,
            **common,
        )
    # critic-free: keep the sampling pass's log-probs (TRL reuses its generation pass too)
    groups = dict(
        samples_per_prompt=GROUP,
        batch_size=args.batch_size // GROUP,
        update_epochs=1,
        sampling_logprobs=True,
    )
    if name == "ours-rloo":
        # as TRL 1.16 RLOO: k1 sequence KL in the reward, a sequence-level loss (token sum)
        return PPOConfig(
            estimator="rloo", loss_aggregation="seq-mean-token-sum", **groups, **common
        )
    # as TRL 1.16 GRPO with beta > 0: k3 KL as a loss term, group std scaling, token mean
    return PPOConfig(estimator="grpo", kl_penalty="loss", kl_estimator="k3", **groups, **common)


def learned_reward(path: str):
    """The sentiment task's learned reward model as the callable the PPO recipe uses."""
    from rlhf_pg.hf.scoring import RewardModel

    scorer = RewardModel.from_pretrained(path)

    def reward_model(prompts, completions, **_):
        return scorer(list(prompts), list(completions))

    return reward_model


def parse_overrides(items: list[str]) -> dict:
    """``key=value`` strings as a dict, each value read as JSON where it parses (numbers,
    true/false) and as a plain string otherwise."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def save_due(args, step: int) -> bool:
    """Save (for the held-out evaluation) every ``--save-every`` steps and at each of the
    first ``--save-early`` steps, where the KL moves fastest."""
    if not args.save_every:
        return False
    return step % args.save_every == 0 or step <= args.save_early


def save_policy(model, tokenizer, save_dir: str, step: int) -> None:
    path = Path(save_dir) / f"step-{step:04d}"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def run_ours(name: str, args, prompts: list[str]) -> dict:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from rlhf_pg.lm import PPOConfig, PPOTrainer, RewardModel

    tokenizer = AutoTokenizer.from_pretrained(args.policy, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(args.policy)
    if args.learn:  # the sentiment task's reward: the demo's scorer (text + EOS, normalised)
        reward = learned_reward(args.reward)
    else:  # same tokenizer: the reward model scores the rollout's tokens directly
        reward = RewardModel(AutoModelForSequenceClassification.from_pretrained(args.reward))
    critic = None
    if name == "ours-ppo-critic":  # TRL 1.12's layout: a separate critic initialised from the RM
        critic = AutoModelForSequenceClassification.from_pretrained(args.critic or args.reward)
    # decoding threads: not a setting TRL has, so not part of ours_config's matched settings
    cfg = dataclasses.replace(ours_config(name, args), generation_threads=args.generation_threads)
    if args.set:  # --set key=value: one PPOConfig field changed (frontier variants, issue 16)
        cfg = PPOConfig.from_dict({**cfg.to_dict(), **parse_overrides(args.set)})
    trainer = PPOTrainer(
        cfg, policy, tokenizer, reward=reward, prompts=prompts, critic_model=critic
    )
    if args.save_every:
        save_policy(trainer.unwrapped_model.pretrained_model, tokenizer, args.save_dir, 0)
    seconds, tokens, logs = [], [], []
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        rollout = trainer.generate(trainer.next_prompts())
        scores, _ = trainer.score(rollout)
        metrics = trainer.step(rollout, scores)
        seconds.append(time.perf_counter() - start)
        tokens.append(float(rollout.response_lengths.sum()))
        logs.append({"step": step, **metrics})
        if save_due(args, step):
            save_policy(trainer.unwrapped_model.pretrained_model, tokenizer, args.save_dir, step)
    return {"step_seconds": seconds, "step_tokens": tokens, "logs": logs}


def run_trl116(name: str, args, prompts: list[str]) -> dict:
    import datasets
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(args.policy, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(args.policy)
    if args.learn:
        reward, reward_tokenizer = learned_reward(args.reward), None
    else:  # TRL decodes the completions and re-tokenises them for the reward model
        reward = AutoModelForSequenceClassification.from_pretrained(args.reward, num_labels=1)
        reward_tokenizer = tokenizer
    marks, logs, tokens = [], [], []

    class Recorder(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            marks.append(time.perf_counter())

        def on_log(self, a, state, control, **kw):
            row = {k: v for k, v in (kw.get("logs") or {}).items() if isinstance(v, (int, float))}
            logs.append({"step": state.global_step, **row})
            if "completions/mean_length" in row:
                tokens.append(row["completions/mean_length"] * args.batch_size)

        def on_step_end(self, a, state, control, model=None, **kw):
            marks.append(time.perf_counter())
            if args.save_every and state.global_step % args.save_every == 0:
                save_policy(model, tokenizer, args.save_dir, state.global_step)
                marks[-1] = time.perf_counter()  # saving is not part of the step

    is_grpo = name.startswith("trl116-grpo")
    beta = 0.0 if name == "trl116-grpo-b0" else args.kl_coef
    with tempfile.TemporaryDirectory() as tmp:
        config_cls, trainer_cls = (
            (GRPOConfig, GRPOTrainer) if is_grpo else (RLOOConfig, RLOOTrainer)
        )
        config = config_cls(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1,
            num_generations=GROUP,
            max_completion_length=args.response_length,
            temperature=args.temperature,
            num_iterations=1,
            beta=beta,
            learning_rate=args.lr,
            max_steps=args.steps,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            lr_scheduler_type="constant",
            disable_tqdm=True,
            disable_dropout=True,
            seed=args.seed,
            bf16=False,
        )
        dataset = datasets.Dataset.from_dict({"prompt": prompts})
        trainer = trainer_cls(
            model=policy,
            reward_funcs=reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            reward_processing_classes=reward_tokenizer,
            callbacks=[Recorder()],
        )
        if args.save_every:
            save_policy(policy, tokenizer, args.save_dir, 0)
        trainer.train()
    seconds = [b - a for a, b in zip(marks, marks[1:])]
    return {"step_seconds": seconds, "step_tokens": tokens[: len(seconds)], "logs": logs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trainer", required=True, choices=TRAINERS)
    p.add_argument("--policy", required=True)
    p.add_argument("--reward", required=True)
    p.add_argument("--prompts", required=True, help="JSON list of prompt strings")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="completions per step")
    p.add_argument("--response-length", type=int, default=32)
    p.add_argument("--ppo-epochs", type=int, default=4)
    p.add_argument("--minibatches", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--kl-coef", type=float, default=0.05)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument(
        "--generation-threads", type=int, default=0, help="ours: decoding threads (0 = --threads)"
    )
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--save-early", type=int, default=0, help="also save at steps 1..N")
    p.add_argument("--save-dir", default="")
    p.add_argument("--critic", default="", help="ours-ppo-critic: critic init (default: RM)")
    p.add_argument("--set", nargs="*", default=[], help="ours: PPOConfig overrides key=value")
    p.add_argument("--learn", action="store_true", help="sentiment task: learned reward scorer")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    prompts = json.loads(Path(args.prompts).read_text())
    run = run_ours if args.trainer.startswith("ours") else run_trl116
    result = run(args.trainer, args, prompts)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    if args.trainer.startswith("trl"):  # ours must not pay for importing trl
        versions["trl"] = __import__("trl").__version__
    result.update(
        trainer=args.trainer,
        completions_per_step=args.batch_size,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        versions=versions,
    )
    tmp = args.out + ".tmp"
    Path(tmp).write_text(json.dumps(result))
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
