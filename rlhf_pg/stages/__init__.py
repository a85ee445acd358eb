"""One module per RLHF stage, each an Args dataclass plus a function that runs it:
``sft`` (supervised fine-tuning), ``reward_model`` (pairs -> TRL RewardTrainer), ``ppo``
(the RL stage on :class:`rlhf_pg.lm.PPOTrainer`) and ``evaluate`` (held-out metrics)."""
