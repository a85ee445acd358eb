"""Token-level RLHF for HuggingFace causal LMs on the shared policy-gradient core.

    from rlhf_pg.lm import PPOConfig, PPOTrainer, RewardModel

    trainer = PPOTrainer(PPOConfig(), model, tokenizer, reward=my_fn, prompts=prompts)
    trainer.train()

One trainer runs PPO with a value head (``estimator="ppo"``) and the
critic-free REINFORCE / RLOO / GRPO (``estimator="reinforce" | "rloo" | "grpo"``).
"""

from ..hf.scoring import RewardModel
from ..hf.tokens import ensure_pad_token
from .checkpoint import CheckpointError, latest_checkpoint
from .config import PPOConfig
from .prompts import TrainerState
from .rewards import CombinedReward, validate_scores
from .rollout import Rollout
from .tracking import TrainerCallback
from .trainer import PPOTrainer
from .value_head import PolicyWithValueHead, ValueHead

__all__ = [
    "CheckpointError",
    "CombinedReward",
    "PPOConfig",
    "PPOTrainer",
    "PolicyWithValueHead",
    "Rollout",
    "RewardModel",
    "TrainerCallback",
    "TrainerState",
    "ValueHead",
    "ensure_pad_token",
    "latest_checkpoint",
    "validate_scores",
]
