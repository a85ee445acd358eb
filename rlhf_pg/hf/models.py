"""Model-level helpers every stage needs: dropout off, hidden and context sizes, the
fused GELU swap for GPT-2, and a tiny random-init Qwen2 for offline chat tasks and tests."""

from __future__ import annotations

from torch import nn


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0 (RL needs deterministic log-probs in train mode):
    ``nn.Dropout`` modules, float ``*dropout*`` attributes that attention modules read at
    forward time (Llama/Qwen-style ``attention_dropout``), and the config's rates."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name, value in vars(module).items():
            if "dropout" in name and isinstance(value, float):
                setattr(module, name, 0.0)
    config = getattr(model, "config", None)
    for name in ("attn_pdrop", "resid_pdrop", "embd_pdrop", "attention_dropout", "dropout"):
        if config is not None and isinstance(getattr(config, name, None), float):
            setattr(config, name, 0.0)


def hidden_size(model: nn.Module) -> int:
    config = model.config
    for name in ("hidden_size", "n_embd", "d_model"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    raise ValueError(f"cannot find the hidden size in the config of {type(model).__name__}")


def context_length(model) -> int | None:
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "max_seq_len"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return None


def fuse_gelu(model: nn.Module) -> int:
    """Swap the tanh-approximate GELU composed of Python ops (GPT-2's ``gelu_new``) for
    torch's fused kernel of the same function; about a third of a CPU forward+backward of a
    small GPT-2 goes to the composed version. Returns the number of modules swapped."""
    from transformers.activations import ACT2FN, NewGELUActivation

    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is NewGELUActivation:
                setattr(parent, name, ACT2FN["gelu_pytorch_tanh"])
                swapped += 1
    return swapped


def tiny_qwen2(
    tokenizer,
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 64,
    seed: int = 0,
    **overrides,
):
    """A random-init ``Qwen2ForCausalLM`` sized for ``tokenizer`` (its vocabulary, EOS and
    pad ids), with grouped-query attention and rotary positions as the real family has;
    ``intermediate_size`` defaults to twice ``hidden_size``. Deterministic in ``seed``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # a model built from a config defaults to eager attention, far slower on CPU than
        # SDPA once a padding mask is passed; from_pretrained picks SDPA itself
        attn_implementation="sdpa",
        **overrides,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Qwen2ForCausalLM(config)
