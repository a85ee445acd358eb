"""The command line's flags: one per ``Config`` field, each with its help text and default.

``add_config_flags`` turns every field of :class:`~classic_control.config.Config` into a
``--flag`` whose help says the field's default and the algorithms that change it; argparse
converts the values (``--env-kwargs`` reads ``key=value`` pairs or a JSON object with
``json``). ``Parser`` makes a usage error one ``error:`` line like every other bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
import warnings

from .algos import REGISTRY
from .config import Config, ConfigError

TOP_LEVEL = {"algo", "env_id", "seed", "total_steps"}


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(kind: type):
    """Parser for ``kind | None`` flags: 'none' or 'null' gives None."""

    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


OLD_PREFIX = "deprecated_"  # namespace prefix of the old flag names' values


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_kwargs_item(text: str) -> dict[str, typing.Any]:
    """One ``--env-kwargs`` value: a JSON object, or ``key=value`` whose value is read as JSON
    (``9.81``, ``true``, ``[1, 2]``, ``"text"``) and is otherwise the plain string."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a JSON object ({e.msg} at character {e.pos})"
            ) from None
        return value  # text starting with "{" parses to a dict or not at all
    key, eq, raw = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(
            f"expected key=value pairs or one JSON object, got {text!r}"
        )
    try:
        return {key.strip(): json.loads(raw)}
    except json.JSONDecodeError:
        return {key.strip(): raw}


class _MergeKwargs(argparse.Action):
    """``--env-kwargs a=1 b=2`` / ``--env-kwargs '{"a": 1}'`` -> one dict; a key given twice
    is an error rather than a silent overwrite."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        merged: dict[str, typing.Any] = {}
        for item in values:
            for key, value in item.items():
                if key in merged:
                    parser.error(f"argument {option_string}: {key!r} is given twice")
                merged[key] = value
        setattr(namespace, self.dest, merged)


def _flag_kwargs(hint) -> dict:
    """How argparse reads a value of a Config field of type ``hint``."""
    if hint is bool:
        return {"type": _bool, "metavar": "BOOL"}
    if hint is int or hint is float:
        return {"type": hint, "metavar": hint.__name__.upper()}
    if hint is str:
        return {"type": hint, "metavar": "NAME"}
    if typing.get_origin(hint) is dict:
        return {
            "type": env_kwargs_item,
            "nargs": "+",
            "action": _MergeKwargs,
            "metavar": "KEY=VALUE|JSON",
        }
    if typing.get_origin(hint) is list:
        item = typing.get_args(hint)[0]
        return {"type": item, "nargs": "+", "metavar": "NAME" if item is str else "INT"}
    if isinstance(hint, types.UnionType):  # float | None, int | None
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return {"type": _optional(inner), "metavar": f"{inner.__name__.upper()}|none"}
    return {}


def _show(value: typing.Any) -> str:
    """A default as one would type it on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)) and not value:
        return "none"
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def config_flag_help(f: dataclasses.Field) -> str:
    """A Config field's help text with its default and the algorithms that change it."""

    default = f.default_factory() if callable(f.default_factory) else f.default
    text = f"{f.metadata['help']} (default: {_show(default)}"
    by_value: dict[str, list[str]] = {}
    for name, algo in REGISTRY.items():
        if f.name in algo.defaults:
            by_value.setdefault(_show(algo.defaults[f.name]), []).append(name)
    for value, algos in by_value.items():
        text += f"; {', '.join(algos)}: {value}"
    continuous = [n for n, a in REGISTRY.items() if f.name in a.continuous_defaults]
    if continuous:
        value = _show(REGISTRY[continuous[0]].continuous_defaults[f.name])
        text += f"; {', '.join(continuous)} on continuous actions without a preset: {value}"
    return text + ")"


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per Config field; None means 'keep the preset's value'. The fields' old
    names (``Config.ALIASES``) still parse, hidden from ``--help``."""
    group = parser.add_argument_group(
        "settings",
        "Each run starts from the defaults below, then the bundled preset for its algorithm "
        "and env if there is one (`classic_control envs` lists them), then --config, then "
        "these flags; the first lines of a run say which settings came from where.",
    )
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if f.name not in TOP_LEVEL:
            kwargs = {"help": config_flag_help(f), **_flag_kwargs(hints[f.name])}
            group.add_argument(flag_name(f.name), dest=f.name, default=None, **kwargs)
    for old, new in Config.ALIASES.items():
        kwargs = {**_flag_kwargs(hints[new]), "help": argparse.SUPPRESS}
        group.add_argument(flag_name(old), dest=OLD_PREFIX + old, default=None, **kwargs)


def rename_old_flags(args: argparse.Namespace) -> None:
    """Move the values of deprecated flags to their fields' names, with a notice each."""
    for old, new in Config.ALIASES.items():
        value = getattr(args, OLD_PREFIX + old, None)
        delattr(args, OLD_PREFIX + old)
        if value is None:
            continue
        if getattr(args, new) is not None:
            raise ConfigError(
                f"{flag_name(old)} and {flag_name(new)} are the same setting; give only one"
            )
        warnings.warn(
            f"flag {flag_name(old)} is deprecated; use {flag_name(new)}",
            FutureWarning,
            stacklevel=2,
        )
        setattr(args, new, value)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's '(default: X)' after every help text that does not already say its default
    (the settings flags name theirs: their argparse default None means 'not given')."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error:`` line (exit code 2) like every other
    bad input, instead of the usage text and a ``SystemExit`` from inside the parser. Its
    subcommands' parsers are of this class too, so they share the help format."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{message} (see: {self.prog} --help)")
