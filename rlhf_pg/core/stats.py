"""Masked statistics: mean, variance, whitening, explained variance.

With ``distributed=True`` the sums and counts are all-reduced over the
default ``torch.distributed`` process group (when one is initialised), so
every process whitens with the statistics of the global batch. The reduced
statistics carry no gradient through other processes' data.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from ._checks import check_finite, check_mask, check_tensor


def _all_reduce_sum(t: Tensor, distributed: bool) -> Tensor:
    if distributed and dist.is_available() and dist.is_initialized():
        t = t.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _accumulation_dtype(x: Tensor) -> torch.dtype:
    """float32 at least: bf16/fp16 cannot even count past 256 exactly."""
    return torch.promote_types(x.dtype, torch.float32)


def _reduces_across_processes(distributed: bool) -> bool:
    return distributed and dist.is_available() and dist.is_initialized()


def _sum_count(x: Tensor, mask: Tensor | None, distributed: bool) -> tuple[Tensor, Tensor | int]:
    """Sum and count of the valid elements (in the accumulation dtype).

    ``mask=None`` on one process: every element is valid, so the count is ``x.numel()``,
    a Python int, and no mask is built: the same values bit for bit, with no mask tensor,
    no ``where`` and no host sync to check the count (small control minibatches call this
    every optimiser step).
    """
    acc = _accumulation_dtype(x)
    if mask is None:
        if not _reduces_across_processes(distributed):
            return x.to(acc).sum(), x.numel()
        mask = torch.ones_like(x, dtype=torch.bool)
    total = torch.where(mask, x, torch.zeros_like(x)).to(acc).sum()
    count = mask.sum().to(acc)
    if _reduces_across_processes(distributed):
        both = _all_reduce_sum(torch.stack([total.detach(), count]), True)
        # keep the local autograd path, add the other processes' part as a constant
        total = total + (both[0] - total.detach())
        count = both[1]
    return total, count


def masked_mean(x: Tensor, mask: Tensor | None = None, *, distributed: bool = False) -> Tensor:
    r"""Mean over valid elements: :math:`\sum_i m_i x_i / \sum_i m_i`.

    Args:
        x: float tensor of any shape.
        mask: bool tensor of x's shape (True = valid); None means all valid.
        distributed: also average over all processes of the default group.

    Returns:
        0-dim tensor, accumulated and returned in float32 at least (bf16 / fp16 input
        would lose counts and sums). Raises if no element is valid.
    """
    check_tensor("x", x)
    mask = None if mask is None else check_mask(mask, "x", x)
    check_finite(mask, x=x)
    total, count = _sum_count(x, mask, distributed)
    if float(count) == 0:
        raise ValueError("mask selects no element; masked_mean needs at least one valid entry")
    return total / count


def masked_var(
    x: Tensor, mask: Tensor | None = None, *, unbiased: bool = True, distributed: bool = False
) -> Tensor:
    r"""Variance over valid elements.

    .. math:: \sigma^2 = \frac{\sum_i m_i (x_i - \mu)^2}{n - 1}\ \text{(unbiased)}
              \quad\text{or}\quad \frac{\cdot}{n}, \qquad n = \sum_i m_i

    Args:
        x: float tensor of any shape; mask: bool tensor of x's shape or None (all valid).

    Returns a 0-dim tensor (float32 at least). With ``unbiased=True`` a single valid
    element gives 0.
    """
    return _mean_and_var(x, mask, unbiased, distributed)[1]


def _mean_and_var(
    x: Tensor, mask: Tensor | None, unbiased: bool, distributed: bool
) -> tuple[Tensor, Tensor]:
    """(``masked_mean``, ``masked_var``), the mean computed once for both."""
    mean = masked_mean(x, mask, distributed=distributed)
    xa = x.to(mean.dtype)  # float32 at least, like the mean
    dev = xa - mean
    if mask is not None:
        dev = torch.where(mask, dev, torch.zeros_like(xa))  # NaN padding must not reach grads
    sq, count = _sum_count(dev**2, mask, distributed)
    if unbiased:
        return mean, sq / (count - 1) if float(count) > 1 else sq * 0
    return mean, sq / count


def whiten(
    x: Tensor,
    mask: Tensor | None = None,
    *,
    shift_mean: bool = True,
    eps: float = 1e-8,
    distributed: bool = False,
) -> Tensor:
    r"""Normalise valid elements to zero mean and unit variance.

    .. math:: \hat{x}_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}

    With ``shift_mean=False`` the mean is added back (only the scale changes).

    Args:
        x: float tensor of any shape, e.g. (B, T) advantages; mask: bool of x's shape or None.

    Returns:
        tensor of x's shape and dtype; masked elements are 0.
    """
    if mask is not None:
        mask = check_mask(mask, "x", x)
        x = torch.where(mask, x, torch.zeros_like(x))
    mean, var = _mean_and_var(x, mask, True, distributed)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    out = out.to(x.dtype)
    if mask is not None:
        out = torch.where(mask, out, torch.zeros_like(out))
    return out


def explained_variance(predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> float:
    r"""Fraction of target variance the predictions explain.

    .. math:: \mathrm{EV} = 1 - \frac{\mathrm{Var}[y - \hat{y}]}{\mathrm{Var}[y]}

    1 is perfect, 0 is no better than a constant, negative is worse.

    Args:
        predictions, targets: float tensors of the same shape (e.g. (B, T) values and
            returns); mask: bool of that shape or None.

    Returns:
        a Python float; NaN when the targets have zero variance.
    """
    check_tensor("predictions", predictions)
    check_tensor("targets", targets)
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions has shape {tuple(predictions.shape)} but targets has "
            f"{tuple(targets.shape)}; they must match"
        )
    var_y = masked_var(targets.detach(), mask, unbiased=False)
    if float(var_y) == 0:
        return float("nan")
    var_res = masked_var((targets - predictions).detach(), mask, unbiased=False)
    return float(1 - var_res / var_y)
