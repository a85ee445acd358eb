"""rlhf-pg: policy gradients from CartPole to GPT-2 on one tested core.

The loss and advantage functions are re-exported here::

    from rlhf_pg import gae, ppo_clip_loss, reinforce_loss, value_loss

The language-model side lives in ``rlhf_pg.lm`` (imported on demand, so
importing the core does not load transformers).
"""

from .core import *  # noqa: F403
from .core import __all__ as _core_all

__version__ = "0.1.0"
__all__ = [*_core_all, "__version__"]
