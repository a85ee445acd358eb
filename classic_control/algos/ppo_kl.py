"""PPO with the adaptive KL penalty instead of the clip (the paper's other variant).

Each update maximises the importance-weighted surrogate minus beta times
KL(old || new) over the same epochs of minibatches as PPO-clip; after the
update, the core's ``AdaptiveKLController`` moves beta towards ``kl_target``
with the KL measured on the whole batch (beta grows when the policy moved too
far, shrinks when it moved too little).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlhf_pg.core import (
    AdaptiveKLController,
    explained_variance,
    kl_k3,
    ppo_kl_penalty_loss,
)

from ..config import Config, ConfigError
from ..networks import ActorCritic
from ..rollout import Batch
from .base import unchecked_core
from .ppo import PPO, flat_steps, shuffled_minibatches

_LOGGED = ("loss/policy", "loss/value", "loss/entropy", "loss/kl_penalty", "grad_norm")


class PPOKL(PPO):
    def __init__(self, cfg: Config, agent: ActorCritic) -> None:
        super().__init__(cfg, agent)
        self.kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        for name in ("kl_coef", "kl_target", "kl_horizon", "update_epochs", "num_minibatches"):
            value = getattr(cfg, name)
            if not value > 0:
                raise ConfigError(f"{name} must be > 0 for ppo_kl, got {value}")
        batch = cfg.num_envs * cfg.num_steps
        if batch % cfg.num_minibatches:
            raise ConfigError(
                f"batch of num_envs*num_steps = {batch} is not divisible into "
                f"num_minibatches = {cfg.num_minibatches}; choose a divisor of {batch}"
            )

    def update(self, b: Batch, progress_left: float) -> dict[str, float]:
        adv, ret = self.advantages(b)
        n = b.steps
        flat = flat_steps(b, adv, ret)
        beta = self.kl_ctl.kl_coef
        with unchecked_core():
            logs = self._penalty_epochs(flat, beta)
        self.check_losses(logs)
        with torch.inference_mode():  # the KL the controller reacts to: old vs updated policy
            new_logp = self.agent.evaluate(flat["obs"], flat["actions"], entropy_grad=False)[0]
            kl = float(kl_k3(flat["old_logp"], new_logp).mean())
        self.kl_ctl.update(kl, n)
        metrics = dict(zip(_LOGGED, logs.mean(0).tolist()))
        metrics.update(
            {
                "policy/approx_kl": kl,
                "kl/coef": beta,
                "value/explained_variance": explained_variance(b.values, ret),
            }
        )
        return metrics

    def _penalty_epochs(self, d: dict[str, Tensor], beta: float) -> Tensor:
        cfg = self.cfg
        n = d["obs"].shape[0]
        mb_size = n // cfg.num_minibatches

        def penalised(logp: Tensor, old_logp: Tensor, adv: Tensor):
            return ppo_kl_penalty_loss(logp, old_logp, adv, kl_coef=beta)

        logs: list[Tensor] = []
        for _ in range(cfg.update_epochs):
            for mb in shuffled_minibatches(d, torch.randperm(n), mb_size):
                pg, vl, ent_mean, grad_norm = self.minibatch_step(mb, penalised)
                logs.append(
                    torch.stack([pg.surrogate, vl, ent_mean, pg.approx_kl, grad_norm]).detach()
                )
        return torch.stack(logs)
