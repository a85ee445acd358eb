"""A tiny SFT model and reward model for the pipeline tests, trained once per test session.

Several xdist workers may ask for them at once: a file lock lets the first one train them
into a session-wide cache and the others reuse the cached folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml
from filelock import FileLock

from rlhf_pg.demo.pipeline import DemoConfig, rm_args, sft_args
from rlhf_pg.stages.reward_model import train_reward_model
from rlhf_pg.stages.sft import train_sft

# Overrides of the recipe YAMLs the demo composes: small enough for a few CPU-seconds per
# stage, big enough that SFT samples carry sentiment words and VADER can tell pairs apart.
TINY_DEMO = {
    "num_threads": 1,
    "progress": False,
    "sft": {"corpus_size": 3000, "vocab_size": 400, "n_layer": 2, "n_embd": 64, "max_steps": 300},
    "reward_model": {
        "n_prompts": 300,
        "num_train_epochs": 4.0,
        "learning_rate": 2e-3,
        "max_new_tokens": 16,
    },
    "ppo": {
        "max_steps": 4,
        "batch_size": 16,
        "max_new_tokens": 12,
        "num_eval_prompts": 16,
        "eval_every": 2,
    },
}


def shared_cache(tmp_path_factory) -> Path:
    """A cache folder shared by all xdist workers of this session (and only this session)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "pipeline_cache"
    path.mkdir(exist_ok=True)
    return path


def tiny_sft_and_rm(cache: Path) -> tuple[Path, Path]:
    """Paths of the tiny SFT model and reward model (trained on first use)."""
    torch.set_num_threads(1)
    with FileLock(str(cache / ".lock")):
        cfg = DemoConfig(cache_dir=str(cache), **TINY_DEMO)
        sft_path = train_sft(sft_args(cfg))
        return sft_path, train_reward_model(rm_args(cfg, sft_path))


def write_tiny_demo_yaml(path: Path) -> Path:
    path.write_text(yaml.safe_dump(TINY_DEMO))
    return path
