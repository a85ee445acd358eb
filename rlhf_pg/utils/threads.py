"""How many threads torch computes with: asked for, or from the environment, or a default
that does not oversubscribe the machine.

Precedence, first that is set: an explicit count (a ``--threads`` flag, a config's
``num_threads`` > 0), then ``OMP_NUM_THREADS``, then the default: the physical cores this
process may run on, i.e. ``min(physical cores, len(os.sched_getaffinity(0)))`` (a
container or ``taskset`` limit counts; hyper-threads do not, as two OpenMP threads on one
core mostly wait on each other).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .config import ConfigError


def default_threads() -> int:
    """Physical cores, capped by the CPUs this process is allowed to run on."""
    import psutil

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return max(1, min(physical, allowed or physical))


def env_threads(env: Mapping[str, str] | None = None) -> int | None:
    """``OMP_NUM_THREADS`` as a count (its first entry when it lists nested levels, as
    ``4,2``), None when unset or empty; a value that is not a positive integer raises."""
    raw = (os.environ if env is None else env).get("OMP_NUM_THREADS", "").strip()
    if not raw:
        return None
    first = raw.split(",")[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise ConfigError(
            f"OMP_NUM_THREADS={raw!r} is not a positive integer; set it to e.g. 2, or unset "
            "it for the default (physical cores)"
        )
    return int(first)


def resolve_threads(requested: int | None, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """``(threads, where the number came from)``: ``requested`` when > 0, else
    ``OMP_NUM_THREADS``, else :func:`default_threads`."""
    if requested is not None and requested < 0:
        raise ConfigError(f"threads={requested} must be >= 1 (or 0 for the default)")
    if requested:
        return requested, "asked for"
    from_env = env_threads(env)
    if from_env is not None:
        return from_env, "OMP_NUM_THREADS"
    return default_threads(), "physical cores available"


def set_torch_threads(
    requested: int | None, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """Resolve the count (see :func:`resolve_threads`) and hand it to torch."""
    import torch

    threads, source = resolve_threads(requested, env)
    torch.set_num_threads(threads)
    return threads, source
