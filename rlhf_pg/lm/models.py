"""Building the trained policy, its reference and LoRA adapters (peft) from user models."""

from __future__ import annotations

import copy

import torch

from ..hf.models import disable_dropout, fuse_gelu, hidden_size
from ..hf.tokens import ensure_pad_token
from .config import PPOConfig
from .value_head import PolicyWithValueHead, ValueHead


def check_lora_targets(model, targets: list[str]) -> None:
    """Raise naming any target that matches no module (by last name or dotted suffix)."""
    names = [name for name, _ in model.named_modules() if name]
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        shown = ", ".join(leaves[:30])
        raise ValueError(
            f"LoRA target module(s) {missing} not found in {type(model).__name__}; "
            f"module names include: {shown}"
        )


REFERENCE_ADAPTER = "reference"


def keep_reference_adapter(model) -> str:
    """A frozen copy of a peft model's incoming (e.g. SFT) adapter, named ``reference``:
    the reference policy is base + that adapter, not the bare base. Returns its name."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    active = model.active_adapter
    model.add_adapter(REFERENCE_ADAPTER, model.peft_config[active])
    state = get_peft_model_state_dict(model, adapter_name=active)
    set_peft_model_state_dict(model, state, adapter_name=REFERENCE_ADAPTER)
    model.set_adapter(active)  # keeps the incoming adapter the trained one
    for name, param in model.named_parameters():
        if f".{REFERENCE_ADAPTER}." in name:
            param.requires_grad_(False)
    return REFERENCE_ADAPTER


def apply_lora(model, config: PPOConfig, lora_config=None):
    """Wrap ``model`` with trainable LoRA adapters (base frozen), from ``lora_config`` (a
    ``peft.LoraConfig``) or the config's flat ``lora_*`` fields."""
    from peft import LoraConfig, get_peft_model

    targets = config.lora_target_modules or None
    if targets and lora_config is None:
        check_lora_targets(model, targets)
    from transformers.pytorch_utils import Conv1D

    lora = lora_config or LoraConfig(
        # GPT-2 style Conv1D layers store weights transposed
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as err:  # peft has no default targets for this architecture
        raise ValueError(
            f"cannot apply LoRA to {type(model).__name__}: {err}; set lora_target_modules"
        ) from err


def match_vocabulary(reference, policy, tokenizer) -> None:
    """Grow an explicit reference to the tokenizer (a pad token may have been added) and copy
    the new embedding rows from the policy, so reference and policy agree at step 0."""
    ref_emb, pol_emb = reference.get_input_embeddings(), policy.get_input_embeddings()
    start = ref_emb.num_embeddings
    if start >= len(tokenizer):
        return
    reference.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    pairs = [(reference.get_input_embeddings(), pol_emb)]
    ref_out, pol_out = reference.get_output_embeddings(), policy.get_output_embeddings()
    if ref_out is not None and pol_out is not None and ref_out.weight is not pairs[0][0].weight:
        pairs.append((ref_out, pol_out))
    with torch.no_grad():
        for dst, src in pairs:
            dst.weight[start:] = src.weight[start : len(tokenizer)].to(dst.weight)
    reference.config.pad_token_id = tokenizer.pad_token_id


def prepare_critic(critic, tokenizer) -> None:
    """A separate critic reads the policy's tokens: its vocabulary must be the policy
    tokenizer's (at most missing the pad token the trainer added). Only its trunk feeds the
    value head, so everything outside the trunk (a classifier's score layer) is frozen:
    DDP would otherwise wait forever for gradients that never come."""
    vocab = critic.get_input_embeddings().num_embeddings
    if vocab not in (len(tokenizer), len(tokenizer) - 1):
        raise ValueError(
            f"critic_model has a vocabulary of {vocab} tokens but the policy tokenizer has "
            f"{len(tokenizer)}; the critic reads the policy's tokens, so it must share its "
            "tokenizer (e.g. a reward model trained from the SFT model)"
        )
    ensure_pad_token(tokenizer, critic)
    disable_dropout(critic)
    trunk = {id(p) for p in critic.base_model.parameters()}
    for p in critic.parameters():
        if id(p) not in trunk:
            p.requires_grad_(False)


def _policy_and_reference(cfg: PPOConfig, base, ref_model, lora_config):
    """``(policy base, frozen reference model or None, reference adapter or None)``: with
    LoRA the reference lives inside the peft model (adapters disabled, or a frozen copy of
    an incoming adapter); otherwise it is ``ref_model`` or a frozen copy of the policy."""
    if cfg.use_lora or lora_config is not None:
        if ref_model is not None:
            raise ValueError(
                "ref_model cannot be combined with LoRA: the reference is the policy's base "
                "(with its incoming adapter, if any)"
            )
        if hasattr(base, "peft_config"):  # e.g. an SFT adapter: train on, refer to its copy
            return base, None, keep_reference_adapter(base)
        return apply_lora(base, cfg, lora_config), None, None
    if hasattr(base, "peft_config"):
        raise ValueError("model is a peft model; set use_lora=True to train its adapters")
    ref_model = ref_model if ref_model is not None else copy.deepcopy(base)
    ref_model.eval().requires_grad_(False)
    disable_dropout(ref_model)
    return base, ref_model, None


def build_policy(
    cfg: PPOConfig,
    model,
    tokenizer,
    *,
    ref_model=None,
    critic_model=None,
    reward_models=(),
    lora_config=None,
) -> tuple[PolicyWithValueHead, object | None]:
    """The policy wrapper (pad token, no dropout, LoRA or not, value head when the estimator
    needs one) and the frozen reference (None with LoRA: the base with adapters disabled,
    or with a frozen copy of the incoming adapter when the model already was a peft model)."""
    if critic_model is not None and not cfg.uses_critic:
        raise ValueError(f"critic_model was given but estimator={cfg.estimator!r} uses no critic")
    wrapper = model if isinstance(model, PolicyWithValueHead) else None
    base = wrapper.pretrained_model if wrapper else model
    if not hasattr(base, "generate"):
        raise TypeError(f"model must be a causal LM with generate(), got {type(base).__name__}")
    resized = base.get_input_embeddings().num_embeddings
    ensure_pad_token(tokenizer, base)
    resized = base.get_input_embeddings().num_embeddings != resized
    if ref_model is not None:
        match_vocabulary(ref_model, base, tokenizer)
    if critic_model is not None:
        prepare_critic(critic_model, tokenizer)
    for rm in reward_models:
        if rm.tokenizer is None:
            ensure_pad_token(tokenizer, rm.model)
    disable_dropout(base)
    if cfg.fused_gelu:
        for m in (base, critic_model, *[rm.model for rm in reward_models]):
            if m is not None:
                fuse_gelu(m)
    base, ref_model, reference_adapter = _policy_and_reference(cfg, base, ref_model, lora_config)
    if wrapper is None:
        wrapper = PolicyWithValueHead(
            base, with_value_head=cfg.uses_critic, critic_model=critic_model
        )
    else:
        wrapper.pretrained_model = base
        if cfg.uses_critic and wrapper.v_head is None:
            wrapper.v_head = ValueHead(hidden_size(base))
    wrapper.reference_adapter = reference_adapter
    wrapper.detach_value_input = cfg.value_head_detach
    wrapper.resized_embeddings = wrapper.resized_embeddings or resized
    if wrapper.v_head is not None:
        wrapper.v_head.requires_grad_(cfg.uses_critic)
    if cfg.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return wrapper.train(), ref_model
