"""One-GPU check of the sharded paths: a few PPO steps of a tiny GPT-2 under the accelerate
config the launcher was given; prints one JSON line and exits 1 if a check fails.

    accelerate launch --config_file recipes/accelerate/fsdp2.yaml --num_processes 1 \\
        bench/gpu_sharded_check.py --steps 2
    accelerate launch --config_file recipes/accelerate/gpu_1.yaml bench/gpu_sharded_check.py
    # with deepspeed installed:
    accelerate launch --config_file recipes/accelerate/deepspeed_zero3.yaml --num_processes 1 \\
        bench/gpu_sharded_check.py

Checks: the engine the config asks for is the one running (FSDP2: every policy parameter is
a DTensor; ZeRO: a DeepSpeedEngine of that stage), KL is 0 at the first step (the reference
is prepared like the policy, in the same precision), losses are finite, and a checkpoint
written with ``save_checkpoint`` and loaded into a fresh trainer gives the same full weights.
Needs torch, transformers, accelerate (and deepspeed for the ZeRO configs); no hub, no TRL
for FSDP2. One process suffices to exercise the CUDA side of each path (bf16 mixed
precision, sharded DCP/DeepSpeed checkpoints, gathering for generation); the 2-process
numerics are tested on CPU (tests/test_lm_sharded.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def full_state(trainer) -> dict:
    if trainer.engine is None:
        return {
            k: v.detach().float().cpu() for k, v in trainer.unwrapped_model.state_dict().items()
        }
    state = trainer.accelerator.get_state_dict(trainer.model) or {}
    return {k: v.detach().float().cpu() for k, v in state.items()}


def engine_facts(trainer) -> dict:
    params = list(trainer.model.parameters())
    if trainer.engine == "fsdp":
        from torch.distributed.tensor import DTensor

        return {"sharded": all(isinstance(p, DTensor) for p in params)}
    if trainer.engine == "deepspeed":
        return {
            "sharded": type(trainer.model).__name__ == "DeepSpeedEngine",
            "zero_stage": trainer.model.zero_optimization_stage(),
        }
    return {"sharded": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--bf16", type=int, default=1, help="1: bf16 mixed precision")
    parser.add_argument("--cpu", action="store_true", help="smoke-run on CPU (fp32)")
    args = parser.parse_args()

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf_pg.lm import PPOConfig, PPOTrainer
    from rlhf_pg.tasks import build_corpus, sentiment_prompts, train_tokenizer

    assert args.cpu or torch.cuda.is_available(), "needs a CUDA device (or --cpu)"
    tok = train_tokenizer(build_corpus(500, seed=0), vocab_size=512)
    out = Path(tempfile.mkdtemp(prefix="gpu_sharded_check_"))

    def make(output_dir: Path):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=len(tok),
                n_positions=128,
                n_layer=2,
                n_embd=64,
                n_head=2,
                bos_token_id=tok.eos_token_id,
                eos_token_id=tok.eos_token_id,
            )  # fmt: skip
        )
        cfg = PPOConfig(
            batch_size=4, max_new_tokens=8, gradient_accumulation_steps=2, update_epochs=2,
            bf16=bool(args.bf16) and not args.cpu, use_cpu=args.cpu, max_steps=args.steps + 1, learning_rate=1e-4,
            progress_bar=False, seed=0, output_dir=str(output_dir),
        )  # fmt: skip
        prompts = sentiment_prompts(32, seed=1, n_words=4)
        reward = lambda p, c: [len(x) / 10 for x in c]  # noqa: E731
        return PPOTrainer(cfg, model, tok, reward=reward, prompts=prompts)

    start = time.perf_counter()
    trainer = make(out / "run")
    device = "cpu" if args.cpu else torch.cuda.get_device_name(0)
    result = {
        "engine": trainer.engine,
        "device": device,
        "processes": trainer.accelerator.num_processes,
    }
    result.update(engine_facts(trainer))
    history = trainer.train(num_steps=args.steps)
    ckpt = out / "run" / f"checkpoint-{trainer.state.step:06d}"
    again = make(out / "run")
    again.load_checkpoint(str(ckpt))
    saved, loaded = full_state(trainer), full_state(again)
    result.update(
        steps=len(history),
        kl_first_step=history[0]["kl/seq"],
        losses=[h["loss/policy"] for h in history],
        grad_norms=[h["grad_norm"] for h in history],
        resumed_same_weights=bool(saved) and all(torch.equal(saved[k], loaded[k]) for k in saved),
        seconds=round(time.perf_counter() - start, 2),
        peak_memory_gib=None if args.cpu else round(torch.cuda.max_memory_allocated() / 2**30, 3),
        torch=torch.__version__,
    )
    checks = {
        "engine_applied": result["sharded"] is not False,
        "kl_zero_at_first_step": abs(result["kl_first_step"]) < 1e-6,
        "finite": all(math.isfinite(x) for x in result["losses"] + result["grad_norms"]),
        "resume": result["resumed_same_weights"] or not trainer.accelerator.is_main_process,
    }
    result["checks"] = checks
    if trainer.accelerator.is_main_process:
        print(json.dumps(result), flush=True)
    trainer.end_training()
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
