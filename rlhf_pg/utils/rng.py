"""Seeding and exact save/restore of every global RNG a run draws from: torch (CPU and
CUDA), Python's ``random`` and NumPy's legacy global generator (third-party code such as
gymnasium wrappers may use it).

The saved state holds only tensors, numbers, strings and lists, so it round-trips through
``torch.save`` / ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), Python's ``random`` and NumPy's global generator."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - for third-party code that draws from the global RNG
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The state of every global RNG, to pass to :func:`set_rng_state` later."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA only where it was captured and exists)."""
    torch.set_rng_state(state["torch"])
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
