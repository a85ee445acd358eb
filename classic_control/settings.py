"""A run's settings: defaults < preset < config file < flags, checked before anything is built.

This module sits above both ``config`` (the dataclass and its generic checks)
and ``algos`` (each algorithm checks its own fields in ``check_config``), so
neither has to import the other.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rlhf_pg.utils.config import check_keys, config_from_dict, load_yaml, resolve_aliases

from .algos import ALGOS, REGISTRY
from .config import Config, ConfigError, preset_path
from .envs import probe_env


def check_algo(algo: str) -> None:
    if algo not in REGISTRY:
        raise ConfigError(f"unknown algorithm {algo!r}; valid: {', '.join(ALGOS)}")


def validate(cfg: Config) -> None:
    """Reject invalid hyperparameters before any env or network is built."""
    check_algo(cfg.algo)
    cfg.check()
    REGISTRY[cfg.algo].check_config(cfg)


def layer(values: dict[str, Any], source: str) -> dict[str, Any]:
    """One layer of settings, its keys checked and deprecated names renamed (a notice each),
    so that a later layer's new name overrides an earlier layer's old one."""
    check_keys(Config, values, source)
    values = resolve_aliases(Config, values, source)
    if isinstance(values.get("report_to"), str):  # `report_to: tensorboard`, as TRL allows
        values["report_to"] = [values["report_to"]]
    return values


def resolve(
    algo: str,
    env_id: str,
    overrides: dict[str, Any],
    *,
    config_file: Path | None = None,
) -> tuple[Config, str | None]:
    """Defaults (``Algorithm.defaults`` over ``Config``'s) < preset for (algo, env) <
    ``config_file`` < ``overrides`` (None values are ignored). Returns the checked config and
    the preset file name used (None: defaults)."""
    cfg, used, _ = resolve_with_sources(algo, env_id, overrides, config_file=config_file)
    return cfg, used


def resolve_with_sources(
    algo: str,
    env_id: str,
    overrides: dict[str, Any],
    *,
    config_file: Path | None = None,
) -> tuple[Config, str | None, dict[str, str]]:
    """``resolve``, plus where each setting that is not ``Config``'s default came from:
    ``{name: "<algo> defaults" | preset file name | config file | "flags"}``."""
    check_algo(algo)
    values: dict[str, Any] = dict(REGISTRY[algo].defaults)
    sources = dict.fromkeys(values, f"{algo} defaults")
    path = preset_path(algo, env_id)
    used = None
    if path.exists():
        preset = layer(load_yaml(path), path.name)
        values.update(preset)
        sources.update(dict.fromkeys(preset, path.name))
        used = path.name
    if config_file is not None:
        from_file = layer(load_yaml(config_file), str(config_file))
        for key, chosen, flag in (("algo", algo, "--algo"), ("env_id", env_id, "--env")):
            # a saved run's config.yaml names them: fine when they agree, never ignored silently
            if key in from_file and from_file[key] != chosen:
                raise ConfigError(
                    f"{config_file} sets {key}={from_file[key]!r}, but this run is {chosen!r}; "
                    f"choose it with {flag} {from_file[key]}"
                )
        values.update(from_file)
        sources.update(dict.fromkeys(from_file, str(config_file)))
    given = layer({k: v for k, v in overrides.items() if v is not None}, "overrides")
    values.update(given)
    sources.update(dict.fromkeys(given, "flags"))
    values["algo"], values["env_id"] = algo, env_id
    cfg = config_from_dict(Config, values, source=str(config_file or used or "overrides"))
    validate(cfg)
    continuous = f"{algo} defaults for continuous actions"
    if used is None:
        cfg = _continuous_defaults(cfg, sources, continuous)
    for key in ("algo", "env_id"):
        sources.pop(key, None)
    layers = [f"{algo} defaults", continuous, used, str(config_file), "flags"]  # lowest first
    ordered = {k: s for label in layers for k, s in sources.items() if s == label}
    return cfg, used, ordered


def _continuous_defaults(cfg: Config, sources: dict[str, str], label: str) -> Config:
    """``cfg`` with the algorithm's ``continuous_defaults`` for the settings that no config
    file or flag gave, if the env has continuous actions (made once to see)."""
    extra = {
        k: v
        for k, v in REGISTRY[cfg.algo].continuous_defaults.items()
        if sources.get(k, f"{cfg.algo} defaults") == f"{cfg.algo} defaults"
    }
    if not extra or probe_env(cfg.env_id, **cfg.env_options()).discrete:
        return cfg
    sources.update(dict.fromkeys(extra, label))
    return dataclasses.replace(cfg, **extra)


def describe_sources(cfg: Config, sources: dict[str, str]) -> list[str]:
    """Lines for the start of a run: each source with the settings it gave (``sources`` from
    :func:`resolve_with_sources`, lowest layer first); the rest are ``Config``'s defaults."""
    by_source = {source: [] for source in sources.values()}  # lowest layer first
    for f in dataclasses.fields(Config):  # each source's settings in Config's order
        if f.name in sources:
            by_source[sources[f.name]].append(f"{f.name}={_show(getattr(cfg, f.name))}")
    lines = [f"  {source}: {', '.join(items)}" for source, items in by_source.items()]
    rest = "every other setting" if sources else "every setting"
    lines.append(f"  defaults: {rest} (`python -m classic_control train --help` lists them)")
    return lines


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def read_config(path: Path) -> Config:
    """A saved run's ``config.yaml`` (old field names accepted), checked."""
    values = load_yaml(path)
    if not {"algo", "env_id"} <= set(values):
        raise ConfigError(f"{path} does not hold a run's config (no algo / env_id)")
    cfg = config_from_dict(Config, layer(values, str(path)), source=str(path))
    validate(cfg)
    return cfg
