"""Peak memory of the log-prob passes: full-vocabulary log-softmax (before) vs chunked
logit-minus-logsumexp (``rlhf_pg.lm.rollout.token_logprobs``, after), on a 50k vocabulary.

    python bench/lm_logprob_memory.py --repeats 3

Each measurement runs in a fresh process: build a GPT-2-shaped model with a 50,257-token
vocabulary, then one no-grad rollout pass (policy log-probs + entropy, reference log-probs)
and one training pass (log-probs + entropy, backward), as PPOTrainer does per step. Reported:
peak RSS above the RSS after building the model (MB), medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

import torch

VOCAB, LAYERS, WIDTH, BATCH, PROMPT, RESPONSE = 50257, 2, 64, 16, 16, 128


def full_logprobs(logits, tokens, temperature):
    """The implementation before: a float32 log-softmax over (B, R, V), then gather."""
    from rlhf_pg.core import entropy

    scaled = logits.float() / temperature
    logp = torch.log_softmax(scaled, dim=-1)
    return logp.gather(-1, tokens[..., None])[..., 0], entropy(scaled)


def measure(variant: str) -> float:
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf_pg.lm.rollout import token_logprobs

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=VOCAB, n_layer=LAYERS, n_embd=WIDTH, n_head=2, n_positions=256)
    )
    ids = torch.randint(0, VOCAB, (BATCH, PROMPT + RESPONSE))
    tokens = ids[:, PROMPT:]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def logprobs(grad: bool):
        logits = model(input_ids=ids, logits_to_keep=RESPONSE + 1).logits[:, :-1]
        if variant == "full":
            return full_logprobs(logits, tokens, 1.0)
        return token_logprobs(logits, tokens, 1.0, with_entropy=True)

    with torch.no_grad():
        logprobs(False)  # policy pass with entropy
        logprobs(False)  # reference pass
    lp, ent = logprobs(True)
    (lp.sum() - 0.01 * ent.sum()).backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["full", "chunked"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"peak_mb": measure(args.child)}))
        return
    results = {"full": [], "chunked": []}
    for _ in range(args.repeats):  # interleaved, one fresh process each
        for variant in results:
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])
    full, chunked = (statistics.median(results[v]) for v in ("full", "chunked"))
    print(json.dumps({"runs_mb": results, "median_full_mb": full, "median_chunked_mb": chunked}))
    print(f"peak above model: full log-softmax {full:.0f} MB, chunked {chunked:.0f} MB "
          f"({chunked / full:.2f}x); logits of one pass: "
          f"{BATCH * (RESPONSE + 1) * VOCAB * 4 / 2**20:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
