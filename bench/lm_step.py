"""Throughput and peak memory of one rlhf_pg.lm optimisation step on a ~1M-parameter GPT-2.

Set-up (the shape issue 7 compares against TRL): random-init GPT-2 with 4 layers x 128 dim
(0.86M parameters with the ~400-token byte-level BPE trained here on generated word lists),
prompts of 8-16 tokens, 64 completions x 32 new tokens per step, temperature 1.0, fp32,
4 PPO epochs x 1 minibatch, a cheap callable reward. Each configuration runs in its own
process (so peak RSS is its own); a step is timed from generation to the end of the update,
after one warm-up step. Configurations are interleaved over --rounds rounds so that load
drift on a shared machine hits them alike; the table shows medians over all rounds.

    python bench/lm_step.py                   # all configurations, markdown table on stdout
    python bench/lm_step.py --configs ppo ppo-lora --rounds 3 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    # name: (PPOConfig overrides, prompts per step)
    "ppo": ({"estimator": "ppo"}, 64),
    "ppo-composed-gelu": ({"estimator": "ppo", "fused_gelu": False}, 64),
    "ppo-lora": ({"estimator": "ppo", "use_lora": True, "lora_r": 8, "learning_rate": 1e-3}, 64),
    # critic-free: the sampling pass's log-probs are kept (PPOConfig.sampling_logprobs)
    "rloo-k4": ({"estimator": "rloo", "samples_per_prompt": 4, "sampling_logprobs": True}, 16),
    "grpo-k4": ({"estimator": "grpo", "samples_per_prompt": 4, "sampling_logprobs": True}, 16),
}
WORDS = [
    "the",
    "a",
    "film",
    "movie",
    "story",
    "plot",
    "actor",
    "music",
    "scene",
    "ending",
    "was",
    "is",
    "were",
    "great",
    "good",
    "bad",
    "terrible",
    "wonderful",
    "boring",
    "funny",
    "long",
    "short",
    "dark",
    "bright",
    "and",
    "but",
    "with",
    "of",
    "i",
    "loved",
    "hated",
    "it",
    "this",
    "that",
    "one",
    "two",
    "three",
]


def build(vocab_size: int = 2000):
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 20))) for _ in range(5000)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>", padding_side="left"
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=128,
        n_layer=4,
        n_head=4,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    prompts = []
    while len(prompts) < 512:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
        if 8 <= len(tokenizer(text)["input_ids"]) <= 16:
            prompts.append(text)
    return tokenizer, model, prompts


def run_one(name: str, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from rlhf_pg.lm import PPOConfig, PPOTrainer

    overrides, n_prompts = CONFIGS[name]
    tokenizer, model, prompts = build()
    params = sum(p.numel() for p in model.parameters())
    settings = dict(
        batch_size=n_prompts,
        max_new_tokens=32,
        temperature=1.0,
        update_epochs=4,
        num_minibatches=1,
        learning_rate=1e-4,
        use_cpu=True,
        progress_bar=False,
        max_steps=repeats + 1,
    )
    settings.update(overrides)
    cfg = PPOConfig(**settings)

    def reward(prompts, completions):  # cheap, so the step is what is measured
        return [len(c) / 100 for c in completions]

    trainer = PPOTrainer(cfg, model, tokenizer, reward=reward, prompts=prompts)
    rows = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        batch = trainer.next_prompts()
        rollout = trainer.generate(batch)
        scores, _ = trainer.score(rollout)
        m = trainer.step(rollout, scores)
        wall = time.perf_counter() - start
        if i == 0:
            continue  # warm-up
        tokens = float(rollout.response_lengths.sum())
        rows.append(
            {
                "wall": wall,
                "tokens_per_s": tokens / wall,
                "completions_per_s": len(rollout) / wall,
                "generate": m["time/generate"],
                "forward": m["time/forward"],
                "update": m["time/update"],
                "length": m["response/length"],
            }
        )
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["load_avg_1min"] = os.getloadavg()[0]
    med["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    med["params"] = params
    med["completions"] = n_prompts * cfg.samples_per_prompt
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all configs")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per process")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.repeats, args.threads)))
        return
    runs: dict[str, list[dict]] = {name: [] for name in args.configs}
    for _ in range(args.rounds):  # interleaved, so load drifts hit every config alike
        for name in args.configs:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    name,
                    "--repeats",
                    str(args.repeats),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{name}: {runs[name][-1]}", file=sys.stderr)
    print(f"{args.rounds} rounds x {args.repeats} steps, {args.threads} thread(s); medians\n")
    print(
        "| config | params | completions/step | s/step | completions/s | tokens/s "
        "| generate s | fwd (logp+ref+values) s | update s | peak RSS MB | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        r = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        print(
            f"| {name} | {r['params'] / 1e6:.2f}M | {r['completions']:.0f} | {r['wall']:.3f} "
            f"| {r['completions_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['generate']:.3f} "
            f"| {r['forward']:.3f} | {r['update']:.3f} | {r['peak_rss_mb']:.0f} "
            f"| {r['load_avg_1min']:.1f} |"
        )


if __name__ == "__main__":
    main()
