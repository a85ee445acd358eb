"""Input validation shared by the core functions.

Every public core function validates its arguments up front so that a shape
mix-up raises a message naming the argument, instead of silently broadcasting
a (B,) tensor against a (B, 1) one into a (B, B) result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

_CHECK_FINITE = True


def set_finite_checks(enabled: bool) -> None:
    """Turn the NaN/inf scan of inputs on or off (on by default).

    The scan costs one reduction (and, on a GPU, one host sync) per input
    tensor; hot loops that have already validated their data may disable it.
    """
    global _CHECK_FINITE
    _CHECK_FINITE = bool(enabled)


@contextlib.contextmanager
def finite_checks(enabled: bool) -> Iterator[None]:
    """Context manager that sets the NaN/inf scan for its block and restores it after."""
    previous = _CHECK_FINITE
    set_finite_checks(enabled)
    try:
        yield
    finally:
        set_finite_checks(previous)


def check_tensor(
    name: str, x: object, *, ndim: int | None = None, dims: str = "(batch, time)"
) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s) {dims}, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); expected at least one element")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_same_shape(ref_name: str, ref: Tensor, **others: Tensor | None) -> None:
    for name, t in others.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.shape != ref.shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but {ref_name} has shape {tuple(ref.shape)}; "
                "they must match exactly (no broadcasting)"
            )


def check_mask(mask: Tensor | None, ref_name: str, ref: Tensor) -> Tensor:
    """Return a boolean mask of ref's shape (all True when mask is None)."""
    if mask is None:
        return torch.ones_like(ref, dtype=torch.bool)
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor of dtype bool, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must have dtype torch.bool (True = valid), got {mask.dtype}; "
            "use mask.bool() if it holds 0/1"
        )
    check_same_shape(ref_name, ref, mask=mask)
    return mask


def check_optional_mask(mask: Tensor | None, ref_name: str, ref: Tensor) -> Tensor | None:
    """Like :func:`check_mask` but keeps None (all valid) so callers can take a fast path."""
    return None if mask is None else check_mask(mask, ref_name, ref)


def check_flags(name: str, flags: Tensor | None, ref_name: str, ref: Tensor) -> Tensor:
    """Episode-end flags: boolean, same shape as ref; all False when None."""
    if flags is None:
        return torch.zeros_like(ref, dtype=torch.bool)
    if not isinstance(flags, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of dtype bool, got {type(flags).__name__}")
    if flags.dtype != torch.bool:
        raise TypeError(f"{name} must have dtype torch.bool, got {flags.dtype}")
    check_same_shape(ref_name, ref, **{name: flags})
    return flags


def check_finite(mask: Tensor | None = None, **tensors: Tensor | None) -> None:
    """Raise if any valid (mask True) element is NaN or infinite."""
    if not _CHECK_FINITE:
        return
    for name, t in tensors.items():
        if t is None:
            continue
        bad = ~torch.isfinite(t.detach())
        if mask is not None and t.shape == mask.shape:
            bad = bad & mask
        if bool(bad.any()):
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name} contains NaN or inf at index {idx}; all valid entries must be finite"
            )


def check_unit_interval(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return float(value)
