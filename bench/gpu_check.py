"""GPU check (run it when a device machine is lent): a few PPO steps of a GPT-2-124M-shaped
random-init model on one GPU in bf16, with and without LoRA; completions/s and peak memory.

    python bench/gpu_check.py --steps 4 --out results/gpu_check.json

Needs only torch, transformers, accelerate, peft, tokenizers, safetensors, PyYAML and tqdm
(what the lent GPU image has); no hub, no datasets, no TRL. The tokenizer is a byte-level BPE
trained on the generated review corpus and padded with extra tokens to GPT-2's 50,257, so
embeddings and the LM head have the real model's size. Each configuration runs in a fresh
process so that ``torch.cuda.max_memory_allocated`` is its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIGS = {"ppo-bf16": {}, "ppo-bf16-lora": {"use_lora": True, "lora_r": 16}}


def run_one(name: str, steps: int, batch: int, new_tokens: int) -> dict:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf_pg.lm import PPOConfig, PPOTrainer
    from rlhf_pg.tasks import build_corpus, sentiment_prompts, train_tokenizer

    assert torch.cuda.is_available(), "bench/gpu_check.py needs a CUDA device"
    tok = train_tokenizer(build_corpus(2000, seed=0), vocab_size=2048)
    tok.add_tokens([f"<extra_{i}>" for i in range(50257 - len(tok))])
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=1024))  # 12 x 768
    cfg = PPOConfig(
        batch_size=batch, max_new_tokens=new_tokens, bf16=True, max_steps=steps + 1,
        learning_rate=1e-5, progress_bar=False, seed=0, **CONFIGS[name],
    )  # fmt: skip
    prompts = sentiment_prompts(4 * batch, seed=1, n_words=8)
    trainer = PPOTrainer(
        cfg, model, tok, reward=lambda p, c: [len(x) / 100 for x in c], prompts=prompts
    )
    rates = []
    for i in range(steps + 1):  # the first step warms up kernels and the allocator
        torch.cuda.synchronize()
        start = time.perf_counter()
        rollout = trainer.generate(trainer.next_prompts())
        trainer.step(rollout, trainer.score(rollout)[0])
        torch.cuda.synchronize()
        if i:
            rates.append(len(rollout) / (time.perf_counter() - start))
    return {
        "config": name,
        "device": torch.cuda.get_device_name(0),
        "parameters": sum(p.numel() for p in model.parameters()),
        "completions_per_s_median": statistics.median(rates),
        "completions_per_s": rates,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
        "batch": batch,
        "max_new_tokens": new_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", default="results/gpu_check.json")
    parser.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.steps, args.batch, args.new_tokens)))
        return
    results = []
    for name in CONFIGS:
        cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps),
               "--batch", str(args.batch), "--new-tokens", str(args.new_tokens)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
