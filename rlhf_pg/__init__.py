"""rlhf-pg: policy gradients from CartPole to GPT-2 on one tested core.

The loss and advantage functions are re-exported here::

    from rlhf_pg import gae, ppo_clip_loss, reinforce_loss, value_loss

The language-model side lives in ``rlhf_pg.lm`` (imported on demand, so
importing the core does not load transformers).
"""

import os

# OpenMP threads that wait by spinning (the default of the GNU OpenMP runtime torch's CPU build
# loads) make a busy machine many times slower: 30 demo SFT steps took 271 s with 2 threads on
# the 2-core machine at load 5, 10 s with passive waiting, 22 s with 1 thread
# (docs/benchmarks.md, "Threads"). The runtime reads this when torch first loads, so it is set
# here, before any torch import, and only if the user has not chosen.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .core import *  # noqa: E402, F403
from .core import __all__ as _core_all  # noqa: E402

__version__ = "0.1.0"
__all__ = [*_core_all, "__version__"]
