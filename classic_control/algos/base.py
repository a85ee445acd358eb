"""What every algorithm shares: its config checks, its collector, the optimiser, a clipped
gradient step, state for checkpoints.

A new algorithm subclasses ``Algorithm``, overrides ``check_config`` for the
fields only it reads (``make_collector`` if it does not learn from vector
rollouts) and registers in ``classic_control.algos.REGISTRY``.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rlhf_pg.core import finite_checks, gae

from ..config import Config, ConfigError
from ..envs import EnvSpec
from ..networks import ActorCritic
from ..rollout import Batch, Collector, VectorCollector


def param_groups(cfg: Config, actor: list[nn.Parameter], critic: list[nn.Parameter]) -> list[dict]:
    """Optimiser groups; the critic's carries ``lr_ratio`` = critic_learning_rate / learning_rate.

    ``set_lr`` scales every group by its ratio, so annealing keeps the two rates in proportion.
    Without a critic learning rate it is one group, actor then critic: one fused Adam call
    per step instead of two (a fifth of the optimiser's time with a 4k-parameter network).
    """
    lr = cfg.learning_rate
    if cfg.critic_learning_rate is None:
        return [{"params": [*actor, *critic], "lr": lr, "lr_ratio": 1.0}]
    ratio = cfg.critic_learning_rate / lr
    groups = [{"params": actor, "lr": lr, "lr_ratio": 1.0}] if actor else []
    if critic:
        groups.append({"params": critic, "lr": lr * ratio, "lr_ratio": ratio})
    return groups


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    """Adam or RMSprop over a parameter list or a list of ``param_groups``."""
    # fused kernels: one C++ call per step instead of a Python loop over parameters
    lr = cfg.learning_rate
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=cfg.adam_eps, foreach=True)
    return torch.optim.Adam(params, lr=lr, eps=cfg.adam_eps, fused=True)


def check_minibatches(cfg: Config, what: str = "") -> None:
    """The rollout of ``num_envs * num_steps`` steps must split into equal minibatches."""
    batch = cfg.num_envs * cfg.num_steps
    if cfg.num_minibatches < 1 or batch % cfg.num_minibatches:
        raise ConfigError(
            f"batch of num_envs*num_steps = {cfg.num_envs}*{cfg.num_steps} = {batch} "
            f"is not divisible into num_minibatches = {cfg.num_minibatches}{what}; "
            f"choose a divisor of {batch}"
        )


def gae_advantages(cfg: Config, b: Batch, lam: float) -> tuple[Tensor, Tensor]:
    """GAE(``lam``) advantages and returns of a vector rollout; truncated steps bootstrap
    from V(final observation) through ``next_values`` (``lam = 1``: n-step returns)."""
    return gae(
        b.rewards,
        b.values,
        gamma=cfg.gamma,
        lam=lam,
        terminated=b.terminated,
        truncated=b.truncated,
        next_values=b.next_values,
    )


def actor_critic_params(agent: ActorCritic) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(actor, critic) parameters; with a shared trunk the trunk counts as the actor's."""
    critic = [*agent.value_head.parameters()]
    if agent.critic_body is not None:
        critic = [*agent.critic_body.parameters(), *critic]
    ids = {id(p) for p in critic}
    return [p for p in agent.parameters() if id(p) not in ids], critic


@torch.no_grad()
def clip_grad_norm(grads: list[Tensor], max_norm: float) -> Tensor:
    r"""Scale ``grads`` in place so their global L2 norm is at most ``max_norm`` (0: no
    clipping); returns the norm before clipping.

    .. math:: g \leftarrow g \cdot \min\Big(1, \frac{c}{\lVert g \rVert_2 + 10^{-6}}\Big)

    The operations of ``torch.nn.utils.clip_grad_norm_`` in the same order (bit-identical
    results), without its per-call grouping of the tensors by device and dtype: with a
    4k-parameter network that bookkeeping cost as much as the arithmetic.
    """
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    if max_norm > 0:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


def unchecked_core() -> contextlib.AbstractContextManager[None]:
    """Skip the core's NaN/inf input scans inside a minibatch loop.

    The rollout tensors were scanned once when the advantages were computed;
    the loop re-checks only the loss (see ``Algorithm.step``).
    """
    return finite_checks(False)


class Algorithm:
    """An update rule over collected batches; subclasses override ``update`` (and
    ``check_config`` / ``make_collector`` where they differ from the defaults)."""

    # settings that replace Config's defaults for this algorithm (under any preset)
    defaults: ClassVar[dict[str, Any]] = {}
    # and those for an env with continuous (Box) actions that has no preset for this algorithm
    # (a --config file and flags still override them)
    continuous_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: Config, agent: ActorCritic) -> None:
        self.cfg, self.agent = cfg, agent
        self.params = list(agent.parameters())
        self.optimizer = make_optimizer(cfg, param_groups(cfg, *actor_critic_params(agent)))

    def __init_subclass__(cls, **kwargs) -> None:
        # the old ways (a ``collector`` class attribute or method) would now be ignored
        # silently, leaving the algorithm on vector rollouts: fail at import instead
        super().__init_subclass__(**kwargs)
        if "collector" in vars(cls):
            raise TypeError(f"{cls.__name__}: define make_collector(env_id, spec), not collector")

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Raise ``ConfigError`` for a setting only this algorithm reads (the generic ones
        are ``Config.check``'s); called before any env or network is built."""

    @classmethod
    def check_env(cls, spec: EnvSpec, env_id: str) -> None:
        """Raise ``ConfigError`` for an env whose spaces this algorithm cannot use."""

    @classmethod
    def build_agent(cls, spec: EnvSpec, cfg: Config) -> nn.Module:
        """The network(s) this algorithm trains, saved as the run's model."""
        cls.check_env(spec, cfg.env_id)
        return ActorCritic(spec, cfg)

    def make_collector(self, env_id: str, spec: EnvSpec) -> Collector:
        """What gathers this algorithm's batches: fixed-length vector rollouts by default."""
        return VectorCollector(env_id, spec, self.cfg, self.agent)

    def advantages(self, b: Batch) -> tuple[Tensor, Tensor]:
        """GAE advantages and returns of a vector rollout at ``cfg.gae_lambda``."""
        return gae_advantages(self.cfg, b, self.cfg.gae_lambda)

    def set_lr(self, lr: float) -> None:
        """Set the actor's learning rate; the critic's follows at its ``lr_ratio``."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_ratio", 1.0)

    def step(self, loss: Tensor) -> Tensor:
        """One optimiser step with global grad-norm clipping; returns the pre-clip norm."""
        for p in self.params:  # optimizer.zero_grad(set_to_none=True) without its hooks
            p.grad = None
        loss.backward()
        norm = clip_grad_norm(
            [p.grad for p in self.params if p.grad is not None], self.cfg.max_grad_norm
        )
        self.optimizer.step()
        return norm

    def check_losses(self, logs: Tensor) -> None:
        """One scan per update for what the skipped per-minibatch checks would have caught."""
        if not bool(torch.isfinite(logs).all()):
            raise FloatingPointError(
                "a loss or gradient norm became NaN/inf; lower learning_rate or check the env's rewards"
            )

    def update(self, batch: Batch, progress_left: float) -> dict[str, float]:
        """Learn from one batch; ``progress_left`` goes from 1 to 0 over the run."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.optimizer.load_state_dict(s["optimizer"])
