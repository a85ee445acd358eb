"""YAML config plus command-line overrides for the recipes, checked before any model loads.

A recipe's hyperparameters live in one dataclass. ``parse_recipe_args(Cls, argv)`` reads
``--config file.yaml`` (unknown keys are an error naming them and the valid ones), lets
``--field value`` flags override it through ``transformers.HfArgumentParser``, and the
dataclass's ``__post_init__`` calls :func:`check_types` so a bad value (a string for a
float, a choice that does not exist) fails with one clear line.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")
_UNSET = object()


class ConfigError(ValueError):
    """A recipe config with an unknown key, a value of the wrong type, or one out of range."""


def describe_type(tp: Any) -> str:
    """How an error message names type ``tp`` ("a float", "one of [...]", "a list of an int")."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return f"one of {list(typing.get_args(tp))}"
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        return f"a list of {describe_type(typing.get_args(tp)[0])}"
    return f"a {getattr(tp, '__name__', str(tp))}"


def conforms(value: Any, tp: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits type ``tp``; returns it converted (int -> float) where allowed."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, conv = conforms(value, arg)
            if ok:
                return True, conv
        return False, value
    if origin is Literal:
        return value in typing.get_args(tp), value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        item = typing.get_args(tp)[0]
        checked = [conforms(v, item) for v in value]
        return all(ok for ok, _ in checked), [c for _, c in checked]
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    return True, value


def check_types(obj: Any) -> None:
    """Raise :class:`ConfigError` for the first field whose value does not fit its annotation."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        ok, converted = conforms(value, hints[f.name])
        if not ok:
            raise ConfigError(
                f"{type(obj).__name__}: {f.name}={value!r} is invalid; expected "
                f"{describe_type(hints[f.name])}"
            )
        setattr(obj, f.name, converted)


def require(cond: bool, obj: Any, name: str, rule: str) -> None:
    """Range check for ``__post_init__``: ``require(cfg.lr > 0, cfg, "lr", "must be > 0")``."""
    if not cond:
        raise ConfigError(f"{type(obj).__name__}: {name}={getattr(obj, name)!r} {rule}")


def load_yaml_config(path: str | Path, cls: type) -> dict[str, Any]:
    """Read a YAML mapping and reject keys that are not fields of ``cls``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value, got {type(data).__name__}")
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(valid)}"
        )
    return data


def parse_recipe_args(cls: type[T], argv: list[str] | None = None) -> T:
    """``[--config FILE.yaml] [--field value ...]`` -> a checked ``cls`` instance.

    Flags are defined and converted by ``HfArgumentParser``; only the flags actually given
    override the YAML, whose values are checked by the dataclass itself (so a YAML value
    of the wrong type gets the same one-line message as one passed in Python).
    """
    from transformers import HfArgumentParser

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    values = load_yaml_config(known.config, cls) if known.config is not None else {}
    parser = HfArgumentParser(cls)
    # A non-string sentinel default marks flags not given (argparse would parse a string one).
    parser.set_defaults(**{f.name: _UNSET for f in dataclasses.fields(cls)})
    given, unknown = parser.parse_known_args(rest)
    if unknown:
        raise ConfigError(f"unknown argument(s) {unknown} for {cls.__name__}")
    values.update({k: v for k, v in vars(given).items() if v is not _UNSET})
    return cls(**values)


def config_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Build a checked config from a dict (the demo's path), rejecting unknown keys."""
    valid = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(valid)}"
        )
    return cls(**values)
