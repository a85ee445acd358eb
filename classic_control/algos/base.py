"""What every algorithm shares: the optimiser, a clipped gradient step, state for checkpoints."""

from __future__ import annotations

import contextlib
from typing import ClassVar

import torch
from torch import Tensor, nn

from rlhf_pg.core import finite_checks, gae

from ..config import Config
from ..envs import EnvSpec
from ..networks import ActorCritic
from ..rollout import Batch, EpisodeCollector, VectorCollector


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    # fused kernels: one C++ call per step instead of a Python loop over parameters
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.99, eps=cfg.adam_eps, foreach=True)
    return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps, fused=True)


def unchecked_core() -> contextlib.AbstractContextManager[None]:
    """Skip the core's NaN/inf input scans inside a minibatch loop.

    The rollout tensors were scanned once when the advantages were computed;
    the loop re-checks only the loss (see ``Algorithm.step``).
    """
    return finite_checks(False)


class Algorithm:
    """An update rule over collected batches; subclasses set ``collector`` and ``update``."""

    collector: ClassVar[type[VectorCollector] | type[EpisodeCollector]] = VectorCollector

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Reject settings this algorithm cannot use (a ``ConfigError``); the shared fields are
        checked by ``config.validate``."""

    @classmethod
    def check_env(cls, spec: EnvSpec, env_id: str) -> None:
        """Reject an env whose spaces this algorithm cannot handle (a ``ConfigError``)."""

    @classmethod
    def build_agent(cls, spec: EnvSpec, cfg: Config) -> nn.Module:
        """The network(s) this algorithm trains; saved as the run's model."""
        cls.check_env(spec, cfg.env_id)
        return ActorCritic(spec, cfg)

    def __init__(self, cfg: Config, agent: ActorCritic) -> None:
        self.cfg, self.agent = cfg, agent
        self.params = list(agent.parameters())
        self.optimizer = make_optimizer(cfg, self.params)

    def advantages(self, b: Batch) -> tuple[Tensor, Tensor]:
        """GAE advantages and returns of a vector rollout; truncated steps bootstrap from
        V(final observation) through ``next_values``."""
        return gae(
            b.rewards,
            b.values,
            gamma=self.cfg.gamma,
            lam=self.cfg.gae_lambda,
            terminated=b.terminated,
            truncated=b.truncated,
            next_values=b.next_values,
        )

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, loss: Tensor) -> Tensor:
        """One optimiser step with global grad-norm clipping; returns the pre-clip norm."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            norm = nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        else:
            norm = nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        self.optimizer.step()
        return norm.detach()

    def check_losses(self, logs: Tensor) -> None:
        """One scan per update for what the skipped per-minibatch checks would have caught."""
        if not bool(torch.isfinite(logs).all()):
            raise FloatingPointError(
                "a loss or gradient norm became NaN/inf; lower lr or check the env's rewards"
            )

    def update(self, batch: Batch, progress_left: float) -> dict[str, float]:
        """Learn from one batch; ``progress_left`` goes from 1 to 0 over the run."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.optimizer.load_state_dict(s["optimizer"])
