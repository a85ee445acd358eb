"""GPU check (run it when a device machine is lent): a few steps of a GPT-2-124M-shaped
random-init model on one GPU in bf16 (autocast over fp32 weights, as both trainers do with
``bf16=True``): our PPO with and without LoRA, our GRPO and RLOO, and TRL 1.16's
GRPOTrainer and RLOOTrainer on the same weights, prompts, reward and batch.

    python bench/gpu_check.py --steps 4 --out results/gpu_check.json
    python bench/gpu_check.py --configs ours-ppo ours-ppo-lora   # a subset

Needs torch, transformers, accelerate, peft, tokenizers, safetensors, PyYAML and tqdm (what
the lent GPU image has); the TRL configurations also need trl and datasets (carried as
wheels: see ``bench/device_run.sh``). No hub: the tokenizer is a byte-level BPE trained on
the generated review corpus and padded with extra tokens to GPT-2's 50,257, so embeddings
and the LM head have the real model's size. The model is saved once and every configuration
loads it in a fresh process, so ``torch.cuda.max_memory_allocated`` is its own. A
configuration that fails is recorded with its error and the others still run.

Settings as in ``bench/lm_bench_runners.py`` (the CPU side-by-side): 64 completions per step
(RLOO/GRPO: 16 prompts x 4), KL coefficient / beta 0.05 with a reference model, PPO 4 epochs
of one minibatch, RLOO/GRPO one; the first step warms up kernels and the allocator and is
not timed. The reward is a plain function of the completion text (distinct words / 50), the
same callable for every trainer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CONFIGS = ("ours-ppo", "ours-ppo-lora", "ours-grpo", "ours-rloo", "trl116-grpo", "trl116-rloo")
GPT2_VOCAB = 50257


def sync() -> None:
    """Wait for queued GPU work so the wall clock sees it (a no-op on the --cpu smoke)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reward_fn(prompts, completions, **_) -> list[float]:
    """Distinct words / 50: cheap, deterministic, the same for every trainer."""
    return [len(set(c.split())) / 50.0 for c in completions]


def build_model(workdir: Path) -> Path:
    """GPT-2 124M shape (12 layers x 768, 50,257 tokens), random init, saved once."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf_pg.tasks import build_corpus, train_tokenizer

    path = workdir / "policy"
    if (path / "config.json").exists():
        return path
    tok = train_tokenizer(build_corpus(2000, seed=0), vocab_size=2048)
    tok.add_tokens([f"<extra_{i}>" for i in range(GPT2_VOCAB - len(tok))])
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok), n_positions=1024, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def bench_args(args) -> SimpleNamespace:
    """The fields ``lm_bench_runners.ours_config`` and ``run_trl116`` read."""
    return SimpleNamespace(
        response_length=args.new_tokens, temperature=1.0, lr=1e-5, kl_coef=0.05,
        minibatches=1, steps=args.steps + 1, seed=0, batch_size=args.batch, ppo_epochs=4,
        save_every=0, save_dir="", learn=False, cpu=args.cpu,
    )  # fmt: skip


def run_ours(name: str, args, policy: Path, prompts: list[str]) -> list[float]:
    import dataclasses

    from lm_bench_runners import ours_config
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf_pg.lm import PPOTrainer

    tok = AutoTokenizer.from_pretrained(policy, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(policy)
    base = "ours-ppo" if name == "ours-ppo-lora" else name
    cfg = dataclasses.replace(
        ours_config(base, bench_args(args)), use_cpu=args.cpu, bf16=not args.cpu,
        use_lora=name.endswith("lora"), lora_r=16,
    )  # fmt: skip
    trainer = PPOTrainer(cfg, model, tok, reward=reward_fn, prompts=prompts)
    seconds = []
    for _ in range(args.steps + 1):
        sync()
        start = time.perf_counter()
        rollout = trainer.generate(trainer.next_prompts())
        trainer.step(rollout, trainer.score(rollout)[0])
        sync()
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def run_trl(name: str, args, policy: Path, prompts: list[str]) -> list[float]:
    import datasets
    from lm_bench_runners import GROUP
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(policy, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(policy)
    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **kw):
            sync()
            marks.append(time.perf_counter())

        def on_step_end(self, *a, **kw):
            sync()
            marks.append(time.perf_counter())

    config_cls, trainer_cls = (
        (GRPOConfig, GRPOTrainer) if "grpo" in name else (RLOOConfig, RLOOTrainer)
    )
    config = config_cls(
        output_dir="/tmp/trl_gpu_check", per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1, num_generations=GROUP,
        max_completion_length=args.new_tokens, temperature=1.0, num_iterations=1, beta=0.05,
        learning_rate=1e-5, max_steps=args.steps + 1, report_to="none", save_strategy="no",
        logging_steps=1, lr_scheduler_type="constant", disable_tqdm=True, disable_dropout=True,
        seed=0, bf16=not args.cpu, use_cpu=args.cpu,
    )  # fmt: skip
    trainer = trainer_cls(
        model=model, reward_funcs=reward_fn, args=config, processing_class=tok,
        train_dataset=datasets.Dataset.from_dict({"prompt": prompts}), callbacks=[Clock()],
    )  # fmt: skip
    trainer.train()
    return [b - a for a, b in zip(marks, marks[1:])][1:]


def child(name: str, args) -> dict:
    import torch

    from rlhf_pg.tasks import sentiment_prompts

    assert args.cpu or torch.cuda.is_available(), "bench/gpu_check.py needs a CUDA device"
    policy = Path(args.workdir) / "policy"
    prompts = sentiment_prompts(8 * args.batch, seed=1, n_words=8)
    run = run_trl if name.startswith("trl") else run_ours
    seconds = run(name, args, policy, prompts)
    rates = [args.batch / s for s in seconds]
    versions = {"torch": torch.__version__, "transformers": __import__("transformers").__version__}
    if name.startswith("trl"):
        versions["trl"] = __import__("trl").__version__
    return {
        "config": name,
        "device": "cpu" if args.cpu else torch.cuda.get_device_name(0),
        "completions_per_s_median": statistics.median(rates),
        "completions_per_s": rates,
        "step_seconds": seconds,
        "peak_memory_gb": None if args.cpu else torch.cuda.max_memory_allocated() / 2**30,
        "batch": args.batch,
        "max_new_tokens": args.new_tokens,
        "versions": versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up)")
    parser.add_argument("--batch", type=int, default=64, help="completions per step")
    parser.add_argument("--new-tokens", type=int, default=64, help="max new tokens")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--workdir", default="/tmp/gpu_check", help="saved model folder")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per configuration")
    parser.add_argument("--out", default="results/gpu_check.json")
    parser.add_argument("--cpu", action="store_true", help="smoke-test the script on CPU")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    build_model(Path(args.workdir))
    results = []
    for name in args.configs:
        cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps),
               "--batch", str(args.batch), "--new-tokens", str(args.new_tokens),
               "--workdir", args.workdir] + (["--cpu"] if args.cpu else [])  # fmt: skip
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            if out.returncode:
                row = {"config": name, "error": out.stderr.strip()[-2000:]}
            else:
                row = json.loads(out.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            row = {"config": name, "error": f"timed out after {args.timeout} s"}
        results.append(row)
        print(json.dumps(row), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")  # after each config


if __name__ == "__main__":
    main()
