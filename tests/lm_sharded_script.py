"""PPO steps under a sharded engine; run by test_lm_sharded.py (2 CPU processes) and alone.

Usage: python tests/lm_sharded_script.py none OUT_DIR           (the one-process reference)
       accelerate launch --config_file recipes/accelerate/deepspeed_zero2.yaml \\
           --num_processes 2 --mixed_precision no tests/lm_sharded_script.py zero2 OUT_DIR
       accelerate launch --config_file recipes/accelerate/fsdp2.yaml --num_processes 2 \\
           --mixed_precision no tests/lm_sharded_script.py fsdp2 OUT_DIR

Environment: LORA=1 trains LoRA adapters; PAD=1 gives the tokenizer a pad token; CRITIC=1
adds a separate critic model.

Steps: (0) completions before any other forward pass, (1) two PPO steps on a fixed global batch (linear LR decay), (2) one train() step
whose processes decode for different lengths (rank 0 stops after one token), (3) a
checkpoint written and loaded into a second trainer, (4) one more fixed step in both
trainers. Writes the full weights after (1) and the metrics, with the comparisons of (3)
and (4), on the main process.

accelerate applies FSDP only to GPU processes (with cpu=True it silently runs DDP), so for
``fsdp2`` this script sets accelerate's distributed type to FSDP by hand after start-up,
with the plugin the launcher's config describes: the same FSDP2 code path (fully_shard,
DTensor parameters, sharded checkpoints) on gloo. The trainer itself refuses that
situation (see test_lm_sharded.py::test_fsdp_on_cpu_is_refused_not_run_as_ddp).
"""

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from lm_dist_script import GLOBAL_ROWS, fixed_batch  # noqa: E402
from lm_fixtures import PROMPTS, make_policy, make_reward_model, make_tokenizer  # noqa: E402

from rlhf_pg.lm import PPOConfig, PPOTrainer  # noqa: E402
from rlhf_pg.lm.tracking import TrainerCallback  # noqa: E402
from rlhf_pg.utils.io import atomic_save_safetensors, atomic_write_json  # noqa: E402


def forced_fsdp_accelerator():
    """An accelerator whose distributed type is FSDP2 on CPU processes (see the docstring)."""
    from accelerate import Accelerator
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # from the launcher's FSDP_* variables
    accelerator = Accelerator(cpu=True)
    # AcceleratorState copies PartialState's fields whenever it is built again
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin
    return accelerator


class DecodedWidth(TrainerCallback):
    """Remembers how many tokens this process decoded in the last rollout."""

    width = 0

    def on_rollout(self, trainer, rollout):
        self.width = rollout.response_ids.shape[1]


def make_trainer(engine: str, out: Path, rank: int):
    tok = make_tokenizer(with_pad=os.environ.get("PAD") == "1")
    config = PPOConfig(
        estimator="ppo",
        batch_size=4,
        max_new_tokens=6,
        update_epochs=2,
        gradient_accumulation_steps=2,
        learning_rate=1e-2,
        lr_schedule="linear",  # the schedule must reach the engine's optimizer
        max_steps=4,
        # rank 0 stops at any token, rank 1 only at EOS: they decode different lengths
        stop_token_ids=list(range(len(tok))) if rank == 0 else [],
        use_cpu=True,
        progress_bar=False,
        output_dir=str(out),
        # LORA=1: LoRA adapters on the attention (the reference: adapters disabled)
        use_lora=os.environ.get("LORA") == "1",
        lora_target_modules=["c_attn"],
    )
    accelerator = forced_fsdp_accelerator() if engine == "fsdp2" else None
    trainer = PPOTrainer(
        config,
        make_policy(tok),
        tok,
        accelerator=accelerator,
        # CRITIC=1: a separate critic (a sequence classifier whose score layer is frozen)
        critic_model=make_reward_model(tok) if os.environ.get("CRITIC") == "1" else None,
        prompts=PROMPTS[:4] * 2,
        reward=lambda prompts, completions: [float(len(c)) for c in completions],
        callbacks=[DecodedWidth()],
    )
    return trainer


def fixed_step(trainer) -> dict:
    acc = trainer.accelerator
    q, qm, r, rm, scores = fixed_batch(trainer.tokenizer.pad_token_id, len(trainer.tokenizer) - 1)
    n = GLOBAL_ROWS // acc.num_processes
    rows = slice(acc.process_index * n, (acc.process_index + 1) * n)
    rollout = trainer.rollout_from_tokens(q[rows], qm[rows], r[rows], rm[rows])
    return trainer.step(rollout, scores[rows])


def full_weights(trainer) -> dict[str, torch.Tensor]:
    """The full weights by name on the main process (every process calls it)."""
    if trainer.engine is None:
        return {k: v.detach().clone() for k, v in trainer.unwrapped_model.state_dict().items()}
    state = trainer.accelerator.get_state_dict(trainer.model) or {}  # None off the main process
    return {k: v.detach().float().cpu().clone() for k, v in state.items()}


def policy_dir_matches(folder: Path, saved: dict[str, torch.Tensor]) -> bool:
    """The save_pretrained folder holds the gathered weights (read as files: under ZeRO-3,
    transformers' from_pretrained would partition the model and wait for the other process).
    Full fine-tuning: every weight (the tied LM head saved once); LoRA: every adapter weight
    (peft drops the adapter name from the keys)."""
    on_disk = {f"v_head.{k}": v for k, v in load_file(folder / "value_head.safetensors").items()}
    if (folder / "critic").is_dir():  # a separate critic: its own save_pretrained folder
        for k, v in load_file(folder / "critic" / "model.safetensors").items():
            on_disk[f"critic_model.{k}"] = v
    if (folder / "adapter_model.safetensors").exists():
        for k, v in load_file(folder / "adapter_model.safetensors").items():
            name = k.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
            on_disk[f"pretrained_model.{name}"] = v
        expected = {k for k in saved if ".lora_" in k or k.startswith(("v_head.", "critic_model."))}
    else:
        for k, v in load_file(folder / "model.safetensors").items():
            on_disk[f"pretrained_model.{k}"] = v
        expected = set(saved) - {"pretrained_model.lm_head.weight"}  # tied to the embedding
    return expected <= set(on_disk) and all(
        torch.equal(v.float(), saved[k]) for k, v in on_disk.items()
    )


def engine_facts(trainer, engine: str) -> dict:
    """Evidence that the engine really sharded the policy and the reference (not plain DDP)."""
    params, ref = list(trainer.model.parameters()), trainer.ref_model
    if engine == "fsdp2":
        from torch.distributed.tensor import DTensor

        return {
            "dtensor_params": all(isinstance(p, DTensor) for p in params),
            "dtensor_reference": ref is None
            or all(isinstance(p, DTensor) for p in ref.parameters()),
        }
    if engine.startswith("zero"):
        return {
            "wrapper": type(trainer.model).__name__,
            "zero_stage": trainer.model.zero_optimization_stage(),
            "partitioned_params": all(hasattr(p, "ds_id") for p in params),
            "reference_wrapper": type(ref).__name__ if ref is not None else None,
            "reference_zero_stage": ref.zero_optimization_stage() if ref is not None else None,
        }
    return {}


def run(engine: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    out = Path(out_dir)
    rank = int(os.environ.get("RANK", "0"))  # before any accelerate state exists
    trainer = make_trainer(engine, out / "run", rank)
    acc = trainer.accelerator
    metrics = {"engine": trainer.engine, "num_processes": acc.num_processes}
    metrics.update(engine_facts(trainer, engine))
    # (0) decoding before anything else ran forward (FSDP2 settles its root unit first)
    metrics["first_completions"] = trainer.complete(PROMPTS[:2], max_new_tokens=3)
    # (1) two fixed steps (the second at a decayed learning rate), comparable with one process
    metrics["fixed"] = [fixed_step(trainer), fixed_step(trainer)]
    first = full_weights(trainer)
    if engine == "none":  # the reference: only the fixed steps
        atomic_save_safetensors(first, out / "first.safetensors")
        atomic_write_json(out / "metrics.json", metrics)
        return
    # (2) a train() step: generation with processes stopping at different lengths
    trainer.train(num_steps=1)
    width = torch.tensor([trainer.callbacks[0].width], device=acc.device)
    metrics["decoded_widths"] = acc.gather(width).tolist()
    # (3) save, then load into a second trainer
    ckpt = out / "run" / "checkpoint-000003"
    trainer.save_checkpoint(str(ckpt))
    again = make_trainer(engine, out / "run", rank)
    again.load_checkpoint(str(ckpt))
    saved, loaded = full_weights(trainer), full_weights(again)
    metrics["resumed_step"] = again.state.step
    if acc.is_main_process:
        metrics["resumed_same_weights"] = all(torch.equal(saved[k], loaded[k]) for k in saved)
        metrics["policy_dir_same_weights"] = policy_dir_matches(ckpt / "policy", saved)
    # (4) one more fixed step in both: equal only if the optimizer state came back too
    metrics["after_resume"] = fixed_step(trainer)
    metrics["after_resume_again"] = fixed_step(again)
    second, second_again = full_weights(trainer), full_weights(again)
    if acc.is_main_process:
        metrics["resumed_same_update"] = all(
            torch.equal(second[k], second_again[k]) for k in second
        )
        metrics["checkpoint_files"] = sorted(p.name for p in ckpt.iterdir())
        metrics["policy_files"] = sorted(p.name for p in (ckpt / "policy").iterdir())
        atomic_save_safetensors(first, out / "first.safetensors")
        atomic_write_json(out / "metrics.json", metrics)
    acc.wait_for_everyone()
    # end the process group before the interpreter exits: a gloo group left to the exit
    # handlers can abort a rank ("terminate called without an active exception", SIGABRT)
    again.end_training()
    trainer.end_training()


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2])
    print(json.dumps({"done": True}))
