"""Networks of the off-policy agents: deterministic and squashed-Gaussian actors (the latter
with per-step or state-dependent exploration noise), Q ensembles.

Actions inside the agent live in [-1, 1] (a tanh output); ``mode`` rescales
to the env's bounds for evaluation, and the replay buffer stores the [-1, 1]
action so targets and critics never see the env's units. Layers use
PyTorch's default Linear initialisation, as the reference DDPG/TD3/SAC
implementations do (the on-policy orthogonal init is tuned for PPO).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from rlhf_pg.core import gsde_log_std, gsde_noise, squashed_gaussian_log_prob

from .config import Config
from .envs import EnvSpec

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # keeps exp(log_std) finite and above underflow


def mlp(n_in: int, sizes: list[int], n_out: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in sizes:
        # in place: a Linear's backward needs its input, not its output
        act = nn.Tanh() if activation == "tanh" else nn.ReLU(inplace=True)
        layers += [nn.Linear(n_in, size), act]
        n_in = size
    return nn.Sequential(*layers, nn.Linear(n_in, n_out))


class QEnsemble(nn.Module):
    """``n`` independent critics Q_k(s, a) evaluated by one batched matmul per layer.

    Weights are stacked as (n, in, out), so twin critics cost one ``baddbmm``
    per layer instead of two Linear calls: half the Python and dispatch
    overhead, which dominates at these sizes on a CPU.
    """

    def __init__(self, obs_dim: int, act_dim: int, sizes: list[int], activation: str, n: int):
        super().__init__()
        # in place: baddbmm's backward needs its inputs, not its output
        self.act = {"tanh": torch.tanh_, "relu": torch.relu_}[activation]
        dims = [obs_dim + act_dim, *sizes, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for n_in, n_out in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(n_in)  # nn.Linear's default init, per critic
            self.weights.append(nn.Parameter(torch.empty(n, n_in, n_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, n_out).uniform_(-bound, bound)))

    def forward(self, obs: Tensor, actions: Tensor, first: int | None = None) -> Tensor:
        """Q values, shape (n, B); with ``first``, only those of critics 0 .. first - 1
        (TD3's actor loss needs Q_1 alone: half the matmuls)."""
        n = len(self.weights[0]) if first is None else first
        x = torch.cat([obs, actions], dim=-1).expand(n, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if first is not None:
                w, b = w[:first], b[:first]
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = self.act(x)
        return x.squeeze(-1)


class DeterministicActor(nn.Module):
    """mu(s) = tanh(MLP(s)) in [-1, 1] (DDPG, TD3)."""

    def __init__(self, obs_dim: int, act_dim: int, sizes: list[int], activation: str):
        super().__init__()
        self.net = mlp(obs_dim, sizes, act_dim, activation)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(obs))


class SquashedGaussianActor(nn.Module):
    """a = tanh(u), u ~ N(mu(s), sigma(s)^2) with a state-dependent log-std head (SAC)."""

    def __init__(self, obs_dim: int, act_dim: int, sizes: list[int], activation: str):
        super().__init__()
        self.net = mlp(obs_dim, sizes, 2 * act_dim, activation)

    def forward(self, obs: Tensor) -> Tensor:
        """The deterministic action tanh(mu(s))."""
        mean, _ = self.net(obs).chunk(2, dim=-1)
        return torch.tanh(mean)

    def _gaussian(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return mean + torch.exp(log_std) * torch.randn_like(mean), mean, log_std

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """A reparameterised sample and its log-prob: (actions (B, A), logp (B,))."""
        u, mean, log_std = self._gaussian(obs)
        return torch.tanh(u), squashed_gaussian_log_prob(u, mean, log_std)

    def explore(self, obs: Tensor) -> Tensor:
        """A sample without its log-prob (acting in the env needs none)."""
        return torch.tanh(self._gaussian(obs)[0])


class GSDEActor(nn.Module):
    """SAC's actor with generalized state-dependent exploration (``use_sde``).

    a = tanh(u), u = mu(s) + theta(s)^T W: theta(s) is the last hidden layer,
    W (features x actions) has independent N(0, sigma_ja^2) entries with
    log sigma learned (``log_std``, initialised to ``init_log_std``). Acting
    in the env holds one W per env for several steps (``SAC.explore``); the
    log-prob and the training samples use the Gaussian that a fresh W gives
    at each state, variance sum_j theta_j(s)^2 sigma_ja^2
    (``rlhf_pg.core.gsde_log_std``). As in SB3's SAC: the features get
    gradients through the variance too, and the mean is clipped to [-2, 2]
    so that tanh(mean) cannot saturate where the noise would stop mattering.
    """

    MEAN_CLIP = 2.0

    def __init__(
        self, obs_dim: int, act_dim: int, sizes: list[int], activation: str, init_log_std: float
    ):
        super().__init__()
        self.trunk = mlp(obs_dim, sizes[:-1], sizes[-1], activation)
        self.trunk.append(nn.Tanh() if activation == "tanh" else nn.ReLU(inplace=True))
        self.mu = nn.Linear(sizes[-1], act_dim)
        self.log_std = nn.Parameter(torch.full((sizes[-1], act_dim), float(init_log_std)))

    def _features_and_mean(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        features = self.trunk(obs)
        return features, self.mu(features).clamp(-self.MEAN_CLIP, self.MEAN_CLIP)

    def forward(self, obs: Tensor) -> Tensor:
        """The deterministic action tanh(mu(s))."""
        return torch.tanh(self._features_and_mean(obs)[1])

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """A reparameterised sample of the state-dependent Gaussian and its log-prob:
        (actions (B, A), logp (B,))."""
        features, mean = self._features_and_mean(obs)
        log_std = gsde_log_std(features, self.log_std)
        u = mean + torch.exp(log_std) * torch.randn_like(mean)
        return torch.tanh(u), squashed_gaussian_log_prob(u, mean, log_std)

    def sample_exploration_matrices(self, n: int) -> Tensor:
        """n fresh matrices W (n, features, actions), W_ja ~ N(0, sigma_ja^2), from torch's
        global RNG (which the checkpoint holds)."""
        sigma = torch.exp(self.log_std.detach())
        return sigma * torch.randn(n, *sigma.shape)

    def explore(self, obs: Tensor, exploration_matrices: Tensor) -> Tensor:
        """tanh(mu(s) + theta(s)^T W) with row i of ``obs`` using matrix i."""
        features, mean = self._features_and_mean(obs)
        return torch.tanh(mean + gsde_noise(features, exploration_matrices))


class OffPolicyAgent(nn.Module):
    """Actor, critics (``n_critics``), their target copies, and for SAC the log-temperature."""

    def __init__(self, spec: EnvSpec, cfg: Config, *, stochastic: bool, n_critics: int) -> None:
        super().__init__()
        sizes, act = list(cfg.hidden_sizes), cfg.activation
        self.actor: nn.Module
        if stochastic and cfg.use_sde:
            self.actor = GSDEActor(spec.obs_dim, spec.act_dim, sizes, act, cfg.init_log_std)
        elif stochastic:
            self.actor = SquashedGaussianActor(spec.obs_dim, spec.act_dim, sizes, act)
        else:
            self.actor = DeterministicActor(spec.obs_dim, spec.act_dim, sizes, act)
        self.critic = QEnsemble(spec.obs_dim, spec.act_dim, sizes, act, n_critics)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # SAC samples its target actions from the online actor: no actor target
        self.actor_target = None if stochastic else copy.deepcopy(self.actor).requires_grad_(False)
        self.log_alpha = (
            nn.Parameter(torch.tensor(math.log(cfg.init_alpha))) if stochastic else None
        )
        low, high = torch.as_tensor(spec.act_low), torch.as_tensor(spec.act_high)
        self.register_buffer("act_scale", ((high - low) / 2).float())
        self.register_buffer("act_mid", ((high + low) / 2).float())

    def to_env(self, actions: Tensor) -> Tensor:
        """[-1, 1] -> the env's [low, high]."""
        return self.act_mid + self.act_scale * actions

    def mode(self, obs: Tensor) -> Tensor:
        """The deterministic action in env units, used for evaluation."""
        return self.to_env(self.actor(obs))
