"""One PPO step on a fixed global batch; run by test_lm_distributed.py with 1 or 2 processes.

Usage: python tests/lm_dist_script.py OUT_DIR
       accelerate launch --multi_gpu --num_processes 2 tests/lm_dist_script.py OUT_DIR
Writes the trainable weights after the step and the step metrics (main process only).
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from lm_fixtures import make_policy, make_reward_model, make_tokenizer  # noqa: E402

from rlhf_pg.lm import PPOConfig, PPOTrainer  # noqa: E402
from rlhf_pg.utils.io import atomic_save_safetensors, atomic_write_json  # noqa: E402

GLOBAL_ROWS = 8
SETTINGS = {
    "ppo": {"loss_aggregation": "token-mean"},
    "reinforce": {"loss_aggregation": "seq-mean-token-sum"},
    # a separate critic whose classifier head is unused: DDP must not wait for its gradient
    "ppo_critic": {"estimator": "ppo", "critic": True},
}


def fixed_batch(pad_id: int, vocab: int):
    """Left-padded prompts and right-padded responses of varied lengths, the same every run."""
    g = torch.Generator().manual_seed(0)
    q_len = torch.randint(2, 7, (GLOBAL_ROWS,), generator=g)
    r_len = torch.randint(1, 7, (GLOBAL_ROWS,), generator=g)
    q = torch.randint(0, vocab, (GLOBAL_ROWS, 6), generator=g)
    r = torch.randint(0, vocab, (GLOBAL_ROWS, 6), generator=g)
    q_mask = torch.arange(6)[None] >= 6 - q_len[:, None]
    r_mask = torch.arange(6)[None] < r_len[:, None]
    q = torch.where(q_mask, q, pad_id)
    r = torch.where(r_mask, r, pad_id)
    scores = torch.randn(GLOBAL_ROWS, generator=g)
    return q, q_mask, r, r_mask, scores


def run(out_dir: str) -> None:
    torch.set_num_threads(1)
    tensors, metrics = {}, {}
    for name, extra in SETTINGS.items():
        extra = dict(extra)
        with_critic = extra.pop("critic", False)
        estimator = extra.pop("estimator", name)
        tok = make_tokenizer()
        config = PPOConfig(
            estimator=estimator,
            batch_size=4,
            max_new_tokens=6,
            update_epochs=2,
            gradient_accumulation_steps=2,
            learning_rate=1e-2,
            use_cpu=True,
            progress_bar=False,
            output_dir=str(Path(out_dir) / name),
            **extra,
        )
        critic = make_reward_model(tok) if with_critic else None
        trainer = PPOTrainer(config, make_policy(tok), tok, critic_model=critic)
        acc = trainer.accelerator
        q, qm, r, rm, scores = fixed_batch(tok.pad_token_id, len(tok) - 1)
        n = GLOBAL_ROWS // acc.num_processes
        rows = slice(acc.process_index * n, (acc.process_index + 1) * n)
        rollout = trainer.rollout_from_tokens(q[rows], qm[rows], r[rows], rm[rows])
        metrics[name] = trainer.step(rollout, scores[rows])
        for param_name, p in trainer.unwrapped_model.named_parameters():
            tensors[f"{name}/{param_name}"] = p.detach()
        # the output folder's claim, checks and barriers with several processes: save, then
        # resume in a second trainer of the same process (which shares the claim)
        trainer.save_checkpoint(f"{config.output_dir}/checkpoint-000001")
        critic = make_reward_model(tok) if with_critic else None
        again = PPOTrainer(config, make_policy(tok), tok, critic_model=critic)
        again.load_checkpoint(str(Path(config.output_dir) / "checkpoint-000001"))
        same = all(  # the checkpoint restores what trains; frozen weights come with the model
            torch.equal(p, again.unwrapped_model.get_parameter(n))
            for n, p in trainer.unwrapped_model.named_parameters()
            if p.requires_grad
        )
        metrics[name].update(resumed_step=again.state.step, resumed_same_weights=same)
    if acc.is_main_process:
        atomic_save_safetensors(tensors, Path(out_dir) / "weights.safetensors")
        atomic_write_json(Path(out_dir) / "metrics.json", metrics)
    acc.end_training()


if __name__ == "__main__":
    run(sys.argv[1])
    print(json.dumps({"done": True}))
