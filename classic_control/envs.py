"""Environment construction, space checks, running normalisers and resumable vector envs.

Training envs are a gymnasium ``SyncVectorEnv`` in SAME_STEP autoreset mode:
the step that ends an episode returns the first observation of the next
episode and puts the real last observation in ``info["final_obs"]``, so
every stored transition is a real one and a truncated step can bootstrap
from V(final observation).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from .config import RESERVED_ENV_KWARGS, ConfigError, check_env_kwargs

SUPPORTED_SPACES = "Box (1-D) observations; Discrete or Box (1-D) actions"


@dataclass(frozen=True)
class EnvSpec:
    obs_dim: int
    discrete: bool
    act_dim: int  # number of actions (discrete) or action dimensions (continuous)
    act_low: np.ndarray | None
    act_high: np.ndarray | None


def check_env_id(env_id: str) -> None:
    """Raise a ConfigError naming close matches for an unknown env id.

    ``module:EnvId`` (gymnasium's form for user-defined envs) imports ``module`` first, so
    that the registration it runs on import is seen; a module that cannot be imported is
    one line naming it.
    """
    module, _, name = env_id.rpartition(":")
    if module:
        _import_env_module(module, env_id)
    if name in gym.registry:
        return
    close = difflib.get_close_matches(name, list(gym.registry.keys()), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    if module:
        raise ConfigError(
            f"unknown env id {name!r}: importing {module!r} did not register it; {hint}"
            f"register it in {module!r} with gymnasium.register(id={name!r}, entry_point=...)"
        )
    raise ConfigError(
        f"unknown env id {env_id!r}; {hint}list the registered ids with "
        "`python -m classic_control envs` (an env registered by your own module: "
        f"give it as module:{env_id})"
    )


def _import_env_module(module: str, env_id: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
            raise ConfigError(
                f"env id {env_id!r}: cannot import module {module!r}; put its folder on "
                "PYTHONPATH (or run from that folder)"
            ) from None
        raise ConfigError(f"env id {env_id!r}: importing {module!r} failed: {e}") from None
    except Exception as e:  # the user's module raised while importing
        raise ConfigError(
            f"env id {env_id!r}: importing {module!r} failed: {type(e).__name__}: {e}"
        ) from None


def _accepted_kwargs(env_id: str) -> str:
    """The keyword arguments the env's constructor takes, for an error message ('' if unknown)."""
    try:
        creator = gym.spec(env_id.rpartition(":")[2]).entry_point
        if isinstance(creator, str):
            creator = gym.envs.registration.load_env_creator(creator)
        params = inspect.signature(creator).parameters.values()
    except Exception:  # a C extension or an odd entry point: no hint
        return ""
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = [n for n in names if n not in ("self", *RESERVED_ENV_KWARGS)]
    return f"; {env_id} accepts: {', '.join(names)}" if names else f"; {env_id} accepts none"


def make_env(
    env_id: str,
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> gym.Env:
    """``gym.make(env_id, **env_kwargs)`` with one-line errors; ``max_episode_steps`` replaces
    the env's time limit."""
    check_env_id(env_id)
    env_kwargs = dict(env_kwargs or {})
    check_env_kwargs(env_kwargs)
    kwargs: dict = dict(env_kwargs)
    if render_mode is not None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        kwargs["render_mode"] = render_mode
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(env_id, **kwargs)
        return Box2DWorldPerEpisode(env) if _box2d_world(env.unwrapped) is not None else env
    except gym.error.Error as e:  # deprecated versions, missing extras
        raise ConfigError(f"cannot create env {env_id!r}: {e}") from None
    except ImportError as e:
        raise ConfigError(f"cannot create env {env_id!r}: missing dependency ({e})") from None
    except (TypeError, ValueError) as e:  # a keyword the env does not take, or a bad value
        if not env_kwargs:
            raise
        raise ConfigError(
            f"cannot create env {env_id!r} with env_kwargs {env_kwargs}: {_first_line(e)}"
            f"{_accepted_kwargs(env_id) if isinstance(e, TypeError) else ''}"
        ) from None


def env_spec(env: gym.Env, env_id: str) -> EnvSpec:
    """Check the spaces are supported and describe them."""
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Box) or len(obs.shape) != 1:
        raise ConfigError(
            f"env {env_id!r} has unsupported observation space {obs}; supported: {SUPPORTED_SPACES}"
        )
    if isinstance(act, gym.spaces.Discrete):
        return EnvSpec(obs.shape[0], True, int(act.n), None, None)
    if isinstance(act, gym.spaces.Box) and len(act.shape) == 1:
        return EnvSpec(obs.shape[0], False, act.shape[0], act.low.copy(), act.high.copy())
    raise ConfigError(
        f"env {env_id!r} has unsupported action space {act}; supported: {SUPPORTED_SPACES}"
    )


def probe_env(
    env_id: str, max_episode_steps: int | None = None, env_kwargs: dict[str, Any] | None = None
) -> EnvSpec:
    """Make the env once to check and describe its spaces (env_kwargs can change them), and
    take one step, so that a value the env only uses when stepping (``--env-kwargs g=abc``)
    or a broken user env fails here, in one line, rather than in the middle of training."""
    env = make_env(env_id, max_episode_steps=max_episode_steps, env_kwargs=env_kwargs)
    try:
        spec = env_spec(env, env_id)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                env.reset(seed=0)
                env.step(env.action_space.sample())
        except Exception as e:
            with_kwargs = f" with env_kwargs {env_kwargs}" if env_kwargs else ""
            raise ConfigError(
                f"env {env_id!r}{with_kwargs} fails on its first step: {_first_line(e)}"
            ) from None
        return spec
    finally:
        env.close()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().split(" was raised from the environment creator")[0]
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


class RunningMeanStd:
    """Running mean and variance of a stream of batches (parallel-variance update)."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, x: np.ndarray) -> None:
        b_mean, b_var, n = x.mean(axis=0), x.var(axis=0), x.shape[0]
        delta, total = b_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        self.var, self.count = m2 / total, total

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, s: dict) -> None:
        self.mean = np.asarray(s["mean"], np.float64)
        self.var = np.asarray(s["var"], np.float64)
        self.count = float(s["count"])


class ObsNormalizer:
    """(obs - mean) / std clipped to +-clip; identity when disabled."""

    def __init__(self, obs_dim: int, enabled: bool, clip: float = 10.0) -> None:
        self.enabled, self.clip = enabled, clip
        self.rms = RunningMeanStd((obs_dim,))

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if not self.enabled:  # always a copy: the vector env reuses its output buffer
            return np.array(obs, dtype=np.float32)
        if update:
            self.rms.update(obs)
        z = (obs - self.rms.mean) / np.sqrt(self.rms.var + 1e-8)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)


class RewardScaler:
    """Divide rewards by the running std of the discounted return of each env."""

    def __init__(self, num_envs: int, gamma: float, enabled: bool, clip: float = 10.0) -> None:
        self.enabled, self.gamma, self.clip = enabled, gamma, clip
        self.rms = RunningMeanStd(())
        self.ret = np.zeros(num_envs, np.float64)

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return reward
        self.ret = self.ret * self.gamma + reward
        self.rms.update(self.ret)
        self.ret[done] = 0.0
        return np.clip(reward / np.sqrt(self.rms.var + 1e-8), -self.clip, self.clip)

    def state_dict(self) -> dict:
        return {"rms": self.rms.state_dict(), "ret": self.ret.tolist()}

    def load_state_dict(self, s: dict) -> None:
        self.rms.load_state_dict(s["rms"])
        self.ret = np.asarray(s["ret"], np.float64)


class EpisodeRecorder(gym.Wrapper):
    """Remember the RNG state at the last reset and the actions since.

    Enough to rebuild the env's exact mid-episode state on resume (reset with
    the same RNG state, replay the actions) for any env that is deterministic
    given its ``np_random`` and actions (all classic-control and Box2D tasks,
    once each Box2D episode gets a world of its own: ``Box2DWorldPerEpisode``),
    without pickling the env. ``restore_vector_env`` checks the replay and
    restarts the episode of an env where it does not land on the saved state.
    """

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.env.unwrapped._np_random, _ = gym.utils.seeding.np_random(seed)
        self.reset_rng = self.env.unwrapped.np_random.bit_generator.state
        self.actions: list = []
        return self.env.reset(options=options)

    def step(self, action):
        self.actions.append(np.array(action).tolist())
        return self.env.step(action)

    def state_dict(self) -> dict:
        return {"reset_rng": self.reset_rng, "actions": list(self.actions)}

    def restore(self, s: dict, replay: bool = True) -> np.ndarray:
        """Reset from the saved RNG state and, with ``replay``, step the saved actions."""
        self.env.unwrapped.np_random.bit_generator.state = s["reset_rng"]
        obs, _ = self.reset()
        dtype = self.action_space.dtype
        for a in s["actions"] if replay else []:
            obs, *_ = self.step(np.asarray(a, dtype=dtype))
        return obs


def _box2d_world(env: gym.Env) -> Any:
    world = getattr(env, "world", None)
    return world if type(world).__name__ == "b2World" and hasattr(env, "_destroy") else None


class Box2DWorldPerEpisode(gym.Wrapper):
    """Give a Box2D env a new, empty world before each reset.

    BipedalWalker builds one ``b2World`` in ``__init__`` and keeps it for life; the
    world's broad-phase and contact history then changes the floats of later episodes (an
    episode replayed in a new env diverges within a few steps, and an evaluation would
    depend on the evaluations before it), so an episode would not be a function of its
    reset RNG and actions. LunarLander already builds a new world at every reset; for it
    this changes nothing.
    """

    def reset(self, *, seed=None, options=None):
        env = self.env.unwrapped
        world = _box2d_world(env)
        env._destroy()  # the env's bodies live in the old world: remove them from it first
        env.world = type(world)(gravity=world.gravity, doSleep=world.allowSleeping)
        return self.env.reset(seed=seed, options=options)


def make_vector_env(
    env_id: str,
    num_envs: int,
    max_episode_steps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> SyncVectorEnv:
    def thunk():
        env = make_env(env_id, max_episode_steps=max_episode_steps, env_kwargs=env_kwargs)
        return EpisodeRecorder(env)

    return SyncVectorEnv([thunk] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP, copy=False)


def vector_env_state(envs: SyncVectorEnv) -> list[dict]:
    return [e.state_dict() for e in envs.envs]


def restore_vector_env(
    envs: SyncVectorEnv, states: list[dict], saved_obs: np.ndarray, seed: int, atol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Bring freshly made envs back to the saved mid-episode states.

    Each env is reset with its saved RNG state and its episode's actions replayed. Where
    the replay does not land on that env's saved observation (an env whose episode is not
    a function of its RNG and actions, or a checkpoint written before Box2D episodes got a
    world of their own), the interrupted episode starts again from its first state, with
    a warning, rather than refusing the checkpoint: what was learned is kept, and the
    caller drops that env's partial episode. Returns the batched observations and the
    mask of restarted envs.
    """
    envs.reset(seed=seed)  # initialises every sub-env; overwritten below
    saved_obs = np.asarray(saved_obs)
    obs, restarted = [], np.zeros(len(states), dtype=bool)
    for i, (env, s) in enumerate(zip(envs.envs, states)):
        o = env.restore(s)
        gap = float(np.max(np.abs(o - saved_obs[i]))) if o.shape == saved_obs[i].shape else np.inf
        if not gap <= atol:
            warnings.warn(
                f"env {i}: replaying its saved episode ({len(s['actions'])} steps) did not "
                f"reproduce the saved state (largest difference {gap:.3g}); that episode "
                "starts again from its first state and its partial return is not counted",
                stacklevel=2,
            )
            o, restarted[i] = env.restore(s, replay=False), True
        obs.append(o)
    return np.stack(obs), restarted
