"""Sharded training engines through accelerate: DeepSpeed ZeRO-2/ZeRO-3 and FSDP2.

accelerate picks the engine from the launcher (``accelerate launch --config_file
recipes/accelerate/deepspeed_zero3.yaml ...`` sets ``ACCELERATE_USE_DEEPSPEED``); this module
adapts the trainer to it, in one place:

* :func:`check_launcher` (and :func:`check_hf_trainer_launcher`, :func:`refuse_sharded_weights`
  for the stages on transformers' Trainer) refuse, before any work, an engine that cannot run
  here: accelerate ignores FSDP and DeepSpeed with ``Accelerator(cpu=True)`` and runs DDP.
* :func:`build_accelerator` makes the default ``Accelerator`` (DeepSpeed with ``use_cpu``:
  DeepSpeed's own CPU accelerator on gloo) and :func:`check_engine` checks that the engine
  asked for is the one running.
* :func:`configure_engine` fills the DeepSpeed config's ``auto`` entries from our config
  (micro-batch size, accumulation steps, ``max_grad_norm`` as ``gradient_clipping``) and
  refuses values that disagree with it, before ``prepare``.
* :func:`full_weights` gathers the sharded policy for sampling and evaluation, so decoding
  runs without per-token collectives (ranks may stop decoding at different lengths).
* :func:`prepare_reference` shards a separate frozen model (the reference) the way the
  policy is sharded (TRL's ``prepare_deepspeed``; ``fully_shard`` for FSDP2).

The model/optimizer are given to ``accelerator.prepare`` as before; gradient accumulation
and clipping go through ``accelerator.accumulate`` / ``accelerator.clip_grad_norm_``
(:mod:`rlhf_pg.lm.update`), sharded checkpoints through ``accelerator.save_state`` /
``load_state`` (:mod:`rlhf_pg.lm.checkpoint`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs

from ..utils.config import ConfigError

DEEPSPEED, FSDP = "deepspeed", "fsdp"


class EngineError(ConfigError):
    """The launcher's engine and the run's settings cannot work together."""


def requested_engine(env: Mapping[str, str] | None = None) -> str | None:
    """The engine ``accelerate launch`` asked for (``deepspeed``, ``fsdp``) or None."""
    env = os.environ if env is None else env
    if env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return DEEPSPEED
    if env.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return FSDP
    return None


def engine_of(accelerator: Accelerator) -> str | None:
    """``deepspeed``, ``fsdp`` (version 2) or None (one process, DDP) for a built accelerator."""
    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        return DEEPSPEED
    if kind == DistributedType.FSDP:
        return FSDP
    return None


def zero_stage(accelerator: Accelerator) -> int:
    """The DeepSpeed ZeRO stage (0 without DeepSpeed)."""
    if engine_of(accelerator) != DEEPSPEED:
        return 0
    return int(accelerator.state.deepspeed_plugin.zero_stage)


FSDP_ON_CPU = (
    "accelerate applies FSDP only to GPU processes (with use_cpu=True or without a GPU it would run "
    "DDP); on CPU use cpu_2proc.yaml (DDP) or deepspeed_zero2.yaml / deepspeed_zero3.yaml with "
    "use_cpu=True"
)


def check_launcher(*, cpu: bool, env: Mapping[str, str] | None = None) -> None:
    """Before any work: refuse an engine the launcher asked for that cannot run here."""
    asked = requested_engine(env)
    if asked == FSDP and (cpu or not torch.cuda.is_available()):
        raise EngineError(f"the launcher asked for FSDP but {FSDP_ON_CPU}")
    if asked == DEEPSPEED and importlib.util.find_spec("deepspeed") is None:
        raise EngineError(
            "the launcher asked for DeepSpeed but deepspeed is not installed: "
            "pip install 'rlhf-pg[deepspeed]' (see `make test-deepspeed`)"
        )


def check_hf_trainer_launcher(
    stage: str, *, cpu: bool, env: Mapping[str, str] | None = None
) -> None:
    """Before any work, for a stage run by transformers' Trainer (TRL's SFTTrainer,
    RewardTrainer): :func:`check_launcher`, and no DeepSpeed on CPU processes (the Trainer
    builds no DeepSpeed engine there and fails in its first backward)."""
    if requested_engine(env) == DEEPSPEED and cpu:
        raise EngineError(
            f"{stage} runs transformers' Trainer, which does not run DeepSpeed on CPU "
            "processes; on CPU use cpu_2proc.yaml (DDP), or run DeepSpeed on GPUs"
        )
    check_launcher(cpu=cpu, env=env)


def build_accelerator(*, cpu: bool, **kwargs: Any) -> Accelerator:
    """The default ``Accelerator``: ``Accelerator(cpu=cpu, **kwargs)``, except that DeepSpeed
    with ``cpu=True`` (which accelerate would drop) runs DeepSpeed's CPU accelerator on gloo.
    :func:`check_launcher` before, :func:`check_engine` after."""
    check_launcher(cpu=cpu)
    if requested_engine() == DEEPSPEED and cpu:
        if torch.cuda.is_available():
            raise EngineError(
                "use_cpu=True with a DeepSpeed launcher config on a machine with a GPU: accelerate "
                "would drop DeepSpeed; run on the GPU (use_cpu=False) or use a DDP config"
            )
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # read by deepspeed at import
        handler = InitProcessGroupKwargs(backend="gloo")
        kwargs["kwargs_handlers"] = [*kwargs.get("kwargs_handlers", []), handler]
        accelerator = Accelerator(**kwargs)
    else:
        accelerator = Accelerator(cpu=cpu, **kwargs)
    check_engine(accelerator)
    return accelerator


def check_engine(accelerator: Accelerator, env: Mapping[str, str] | None = None) -> None:
    """Raise when the launcher asked for an engine that accelerate did not set up (it runs
    plain DDP instead of FSDP on CPU processes, without a word), or for FSDP version 1."""
    asked, got = requested_engine(env), engine_of(accelerator)
    if asked is not None and asked != got:
        hint = (
            FSDP_ON_CPU
            if asked == FSDP
            else "is deepspeed installed (pip install 'rlhf-pg[deepspeed]')? accelerate "
            "also drops DeepSpeed with use_cpu=True, which only PPOTrainer and the SFT stage "
            "replace by DeepSpeed's CPU accelerator"
        )
        raise EngineError(
            f"the launcher asked for {asked} but accelerate set up "
            f"{accelerator.distributed_type.value}: {hint}"
        )
    if got == FSDP and accelerator.state.fsdp_plugin.fsdp_version != 2:
        raise EngineError(
            f"fsdp_version={accelerator.state.fsdp_plugin.fsdp_version} is not supported; set "
            "fsdp_version: 2 in the accelerate config (recipes/accelerate/fsdp2.yaml)"
        )


def refuse_sharded_weights(stage: str, env: Mapping[str, str] | None = None) -> None:
    """For a stage that reads and writes whole models on the main process only: refuse a
    launcher that shards the weights (ZeRO-3, FSDP), where that would wait forever or save
    shards."""
    env = os.environ if env is None else env
    engine = requested_engine(env)
    if engine == FSDP or (
        engine == DEEPSPEED and env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    ):
        name = "FSDP" if engine == FSDP else "DeepSpeed ZeRO-3"
        raise EngineError(
            f"{stage} does not support {name} (it shards the weights); run it with one "
            "process, DDP (multi_gpu_ddp.yaml) or DeepSpeed ZeRO-2 (deepspeed_zero2.yaml)"
        )


def _fill_or_check(config: dict, key: str, value: float, ours: str) -> None:
    """Set an ``auto`` (or absent) DeepSpeed entry to our value; refuse a different one."""
    current = config.get(key, "auto")
    if current == "auto" or current is None:
        config[key] = value
    elif float(current) != float(value):
        raise EngineError(
            f"the DeepSpeed config sets {key}={current} but the run has {ours}={value}; make "
            f"them agree or set {key}: auto in the DeepSpeed config"
        )


def configure_engine(
    accelerator: Accelerator,
    *,
    micro_batch_size: int,
    gradient_accumulation_steps: int,
    max_grad_norm: float,
) -> None:
    """Before ``prepare``: accumulation steps for ``accelerator.accumulate``, and with
    DeepSpeed the config's batch sizes and clipping (the engine clips inside its step, so
    ``max_grad_norm`` must be its ``gradient_clipping``; 0 disables clipping in both)."""
    current = accelerator.gradient_accumulation_steps
    if current not in (1, gradient_accumulation_steps):
        raise EngineError(
            f"the accelerator accumulates over {current} steps but the run has "
            f"gradient_accumulation_steps={gradient_accumulation_steps}; make them agree"
        )
    accelerator.gradient_accumulation_steps = gradient_accumulation_steps
    if engine_of(accelerator) != DEEPSPEED:
        return
    plugin = accelerator.state.deepspeed_plugin
    config = plugin.deepspeed_config
    # DeepSpeed's own accumulation boundary and loss scaling follow this number
    _fill_or_check(
        config, "gradient_accumulation_steps", gradient_accumulation_steps,
        "gradient_accumulation_steps",
    )  # fmt: skip
    _fill_or_check(config, "gradient_clipping", max_grad_norm, "max_grad_norm")
    # prepare() without a dataloader cannot derive the micro-batch size
    _fill_or_check(
        config, "train_micro_batch_size_per_gpu", micro_batch_size,
        "the micro-batch size (batch_size * samples_per_prompt / (num_minibatches * "
        "gradient_accumulation_steps))",
    )  # fmt: skip
    global_batch = micro_batch_size * gradient_accumulation_steps * accelerator.num_processes
    _fill_or_check(config, "train_batch_size", global_batch, "the global batch per step")
    plugin.gradient_accumulation_steps = gradient_accumulation_steps
    plugin.gradient_clipping = max_grad_norm
    if plugin.zero_stage == 3:
        # save_pretrained needs the full weights, gathered from the shards
        config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True


@contextlib.contextmanager
def full_weights(accelerator: Accelerator, model) -> Iterator[None]:
    """The policy's full weights on every process for the duration (all processes enter).

    ZeRO-3: DeepSpeed's ``GatheredParameters`` with its per-module fetch hooks removed
    (TRL's helpers); FSDP2: every ``fully_shard`` unit unsharded and kept so through every
    forward (no all-gather per decoded token). Nothing to do otherwise."""
    engine = engine_of(accelerator)
    if engine == DEEPSPEED and zero_stage(accelerator) == 3:
        import deepspeed
        from trl.models.utils import add_hooks, remove_hooks

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            remove_hooks(model)
            try:
                yield
            finally:
                add_hooks(model)
        return
    if engine != FSDP:
        yield
        return
    from torch.distributed.fsdp import FSDPModule

    root = accelerator.unwrap_model(model)
    # FSDP2 takes as root the first unit that runs forward; decoding and the LoRA reference
    # call the inner LM, whose blocks would each become a root. Settle it first (a no-op once
    # the wrapper ran forward; torch has no public call for it)
    root._get_fsdp_state()._lazy_init()
    units = [m for m in root.modules() if isinstance(m, FSDPModule)]
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        after = bool(accelerator.state.fsdp_plugin.reshard_after_forward)
        for unit in units:
            unit.reshard()
            # the root keeps its parameters after forward (FSDP2's own default for it)
            unit.set_reshard_after_forward(after and unit is not root, recurse=False)


def prepare_reference(accelerator: Accelerator, model):
    """A frozen model (the reference) for this engine: sharded like the policy under ZeRO-3
    (TRL's ``prepare_deepspeed``) and FSDP2 (one ``fully_shard`` unit with the policy's
    mixed precision), a DeepSpeed inference engine in the policy's precision under ZeRO-2,
    else moved to the device."""
    engine = engine_of(accelerator)
    if engine == DEEPSPEED:
        from trl.models.utils import prepare_deepspeed

        return prepare_deepspeed(model, accelerator)
    model = model.to(accelerator.device)
    if engine == FSDP:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = accelerator.state.fsdp_plugin.mixed_precision_policy or MixedPrecisionPolicy()
        fully_shard(model, mp_policy=policy)  # gathered for its one forward per rollout
    return model


def grad_norm_value(norm) -> torch.Tensor:
    """``clip_grad_norm_``'s result as a plain tensor: FSDP2 returns a DTensor, DeepSpeed a
    float (its engine's norm of the step just taken) or None before its first step."""
    if norm is None:
        return torch.tensor(float("nan"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return torch.as_tensor(norm).detach().float()


__all__ = [
    "EngineError",
    "build_accelerator",
    "check_engine",
    "check_hf_trainer_launcher",
    "check_launcher",
    "configure_engine",
    "engine_of",
    "full_weights",
    "grad_norm_value",
    "prepare_reference",
    "refuse_sharded_weights",
    "requested_engine",
    "zero_stage",
]
