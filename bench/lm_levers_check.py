"""Device checks of the LM step's speed levers (CUDA when present, else CPU):

1. exactness: the sampling pass's log-probs against a full forward pass over the same tokens,
   on the three test model families (GPT-2, Llama, Qwen2), in float32 and in bf16: the
   trainer reuses them only in float32 (``sampling_logprobs_are_exact``);
2. host syncs of ``ppo_update`` (CUDA only, ``torch.cuda.set_sync_debug_mode``) with 1 and
   8 micro-batches per step: the count must not grow with the micro-batches;
3. seconds per step of critic-free GRPO (k = 4) on a GPT-2-124M-shaped float32 model, with
   the levers on and off (off: the policy's no-grad pass and the reference pass forced),
   at kl_coef 0.05 and 0; medians over the timed steps, on and off alternating.

    python bench/lm_levers_check.py --out results/lm_levers_check.json
    python bench/lm_levers_check.py --small   # a quick CPU run of the same code
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from rlhf_pg.hf import sample_with_logprobs  # noqa: E402
from rlhf_pg.hf.tokens import encode_prompts, left_pad, truncate_at_stop  # noqa: E402
from rlhf_pg.lm import PPOConfig, PPOTrainer  # noqa: E402
from rlhf_pg.lm.rollout import response_forward  # noqa: E402

PROMPTS = ["the movie was", "i loved", "what is twelve plus", "the"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def exactness(device: torch.device) -> dict:
    """Max |sampling-pass log-prob - full-pass log-prob| over valid response tokens."""
    from model_families import FAMILIES, load_family

    out = {}
    for family in FAMILIES:
        model, tok, _ = load_family(family, tempfile.mkdtemp())
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ids, mask = left_pad(encode_prompts(tok, PROMPTS * 4, max_length=64), pad)
        ids, mask = ids.to(device), mask.to(device)
        for dtype in (torch.float32, torch.bfloat16):
            model = model.to(device=device, dtype=dtype).eval()
            gen = torch.Generator(device=device).manual_seed(0)
            s = sample_with_logprobs(
                model, ids, mask, max_new_tokens=16, temperature=0.7,
                stop_ids=[tok.eos_token_id], pad_id=pad, generator=gen,
            )  # fmt: skip
            r_ids, r_mask, _ = truncate_at_stop(s.tokens, [tok.eos_token_id], pad)
            with torch.no_grad():
                full = response_forward(model, ids, mask, r_ids, r_mask, temperature=0.7)[0]
            diff = (s.logprobs[:, : r_ids.shape[1]] - full).abs()[r_mask]
            out[f"{family}/{str(dtype).removeprefix('torch.')}"] = float(diff.max())
    return out


def tiny_trainer(device: torch.device, **overrides) -> PPOTrainer:
    from lm_fixtures import PROMPTS as FIXTURE_PROMPTS
    from lm_fixtures import make_policy, make_tokenizer

    tok = make_tokenizer()
    cfg = PPOConfig(
        batch_size=8, max_new_tokens=8, cpu=device.type == "cpu", progress_bar=False,
        **overrides,
    )  # fmt: skip
    return PPOTrainer(cfg, make_policy(tok), tok, reward=lambda p, c: [len(x) / 10 for x in c],
                      prompts=FIXTURE_PROMPTS)  # fmt: skip


def host_syncs(device: torch.device) -> dict:
    """Synchronising CUDA calls during one trainer.step's update, by micro-batch count."""
    if device.type != "cuda":
        return {"skipped": "needs CUDA"}
    import rlhf_pg.lm.trainer as trainer_module

    out = {}
    for label, split in (("1 micro-batch", (1, 1)), ("8 micro-batches", (2, 4))):
        trainer = tiny_trainer(
            device, update_epochs=2, num_minibatches=split[0], gradient_accumulation_steps=split[1]
        )
        rollout = trainer.generate(trainer.next_prompts())
        counted = []
        real = trainer_module.ppo_update

        def counting(*args, _real=real, _counted=counted, **kwargs):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    return _real(*args, **kwargs)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
                    where = collections.Counter(
                        f"{Path(w.filename).name}:{w.lineno}"
                        for w in caught
                        if "synchroniz" in str(w.message)
                    )
                    _counted.append(where)

        trainer_module.ppo_update = counting
        try:
            trainer.step(rollout, [1.0] * len(rollout))
        finally:
            trainer_module.ppo_update = real
        out[label] = {"total": sum(counted[0].values()), **dict(counted[0])}
    return out


def gpt2_trainer(device: torch.device, small: bool, kl_coef: float) -> PPOTrainer:
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf_pg.tasks import build_corpus, sentiment_prompts, train_tokenizer

    tok = train_tokenizer(build_corpus(2000, seed=0), vocab_size=2048)
    if not small:
        tok.add_tokens([f"<extra_{i}>" for i in range(50257 - len(tok))])
    torch.manual_seed(0)
    shape = dict(n_layer=2, n_embd=64, n_head=2) if small else {}  # else 12 x 768
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=1024, **shape))
    cfg = PPOConfig(
        estimator="grpo", samples_per_prompt=4, batch_size=4 if small else 16,
        max_new_tokens=16 if small else 64, update_epochs=1, kl_penalty="loss",
        kl_estimator="k3", kl_coef=kl_coef, learning_rate=1e-5, progress_bar=False, seed=0,
        cpu=device.type == "cpu",
    )  # fmt: skip
    prompts = sentiment_prompts(64, seed=1, n_words=8)
    return PPOTrainer(cfg, model, tok, reward=lambda p, c: [len(x) / 100 for x in c],
                      prompts=prompts)  # fmt: skip


def step_times(device: torch.device, small: bool, steps: int) -> dict:
    out = {}
    for kl_coef in (0.05, 0.0):
        trainer = gpt2_trainer(device, small, kl_coef)
        levers_on = (trainer.logprobs_from_sampling, trainer.uses_reference)
        times: dict[str, list[float]] = {"on": [], "off": []}
        parts: dict[str, list[float]] = {"on": [], "off": []}
        for i in range(2 * steps + 2):  # on/off alternating; the first pair warms up
            mode = "on" if i % 2 == 0 else "off"
            trainer.logprobs_from_sampling, trainer.uses_reference = (
                levers_on if mode == "on" else (False, True)
            )
            sync(device)
            start = time.perf_counter()
            rollout = trainer.generate(trainer.next_prompts())
            metrics = trainer.step(rollout, [len(c) / 100 for c in rollout.completions])
            sync(device)
            if i >= 2:
                times[mode].append(time.perf_counter() - start)
                parts[mode].append(metrics["time/forward"])
        out[f"grpo kl_coef={kl_coef}"] = {
            mode: {
                "s_per_step": statistics.median(times[mode]),
                "no_grad_passes_s": statistics.median(parts[mode]),
                "completions_per_s": len(rollout) / statistics.median(times[mode]),
            }
            for mode in times
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None)
    p.add_argument("--small", action="store_true", help="tiny model and batch (CPU smoke run)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--parts", nargs="+", default=["exactness", "syncs", "times"])
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    result = {
        "device": name,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for part, fn in (
        ("exactness_max_abs_diff", lambda: exactness(device)),
        ("host_syncs_per_update", lambda: host_syncs(device)),
        ("step_times", lambda: step_times(device, args.small, args.steps)),
    ):
        if part.split("_")[0].replace("host", "syncs").replace("step", "times") not in args.parts:
            continue
        result[part] = fn()
        print(json.dumps({part: result[part]}), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
