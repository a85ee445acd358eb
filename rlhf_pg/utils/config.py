"""The one config loader: YAML files, dicts and command-line flags into checked dataclasses.

Every configurable thing in the project (recipe arguments, the trainer's ``PPOConfig``, the
demo, classic-control agents) is a dataclass. This module turns user input into one:

- :func:`load_yaml` reads a YAML mapping (a syntax error is one line with its position);
- :func:`config_from_dict` / :func:`load_yaml_config` reject unknown keys, naming the valid ones;
- :func:`parse_recipe_args` reads ``--config file.yaml`` plus ``--field value`` flags
  (``transformers.HfArgumentParser``) into one or several dataclasses;
- :func:`check_types` (called from each dataclass's ``__post_init__``) reports the first
  value of the wrong type in one line;
- :func:`with_aliases` lets a dataclass accept other spellings of its fields on every path,
  Python included: its own old names (``ALIASES``: deprecated, each with a one-line
  ``FutureWarning``) and the names TRL users already write (``TRL_NAMES``: not deprecated,
  accepted silently, the value converted where TRL's convention differs). Names TRL has and
  we do not support are in ``TRL_UNSUPPORTED`` and fail with the reason.

Every failure is a :class:`ConfigError`, raised before any model, dataset or env is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")
_UNSET = object()


class ConfigError(ValueError):
    """A config with an unknown key, a value of the wrong type, or one out of range."""


@dataclasses.dataclass(frozen=True)
class TrlName:
    """TRL's name for one of our fields. Not deprecated: it is how TRL users already spell
    the setting, so it is accepted without a notice. ``convert(value, given)`` turns TRL's
    value into ours where the conventions differ (``given``: every setting under our names,
    defaults included, for conversions that depend on another setting); ``note`` says what
    differs in meaning (docs/migrating-from-trl.md lists them)."""

    field: str
    convert: Callable[[Any, dict[str, Any]], Any] | None = None
    note: str = ""


def field_defaults(cls: type) -> dict[str, Any]:
    """``{field: default}`` of a dataclass (fields without a default are left out)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def aliases_of(cls: type) -> dict[str, str]:
    """``{old name: field name}`` a config class still accepts (its ``ALIASES``, deprecated)."""
    return dict(getattr(cls, "ALIASES", {}))


def trl_names_of(cls: type) -> dict[str, TrlName]:
    """``{TRL name: TrlName}`` a config class accepts silently (its ``TRL_NAMES``)."""
    return dict(getattr(cls, "TRL_NAMES", {}))


def other_names_of(cls: type) -> dict[str, str]:
    """Every other spelling a class accepts, deprecated or TRL's: ``{name: field name}``."""
    return {**aliases_of(cls), **{k: v.field for k, v in trl_names_of(cls).items()}}


def resolve_aliases(cls: type, values: dict[str, Any], source: str = "") -> dict[str, Any]:
    """Rename the other spellings in ``values`` to their field names.

    Our own old names (``ALIASES``) come with a one-line ``FutureWarning`` each; TRL's names
    (``TRL_NAMES``) come silently, their values converted to our convention once every key
    is renamed (a conversion sees every setting, defaults included, as converted so far: it
    may depend on another). Giving two spellings of one setting, or a TRL name we do not
    support (``TRL_UNSUPPORTED``), is an error."""
    out = dict(values)
    where = f"{source}: " if source else ""
    unsupported = getattr(cls, "TRL_UNSUPPORTED", {})
    for name in out:
        if name in unsupported:
            raise ConfigError(f"{where}{name!r} (TRL) is not supported: {unsupported[name]}")
    for old, new in aliases_of(cls).items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"{where}{old!r} and {new!r} are the same setting; give only {new!r}")
        warnings.warn(
            f"{where}{cls.__name__} field {old!r} is deprecated; use {new!r}",
            FutureWarning,
            stacklevel=3,
        )
        out[new] = out.pop(old)
    converted = []
    for trl, alias in trl_names_of(cls).items():
        if trl not in out:
            continue
        if alias.field in out:
            raise ConfigError(
                f"{where}{trl!r} (TRL's name) and {alias.field!r} are the same setting; give one"
            )
        out[alias.field] = out.pop(trl)
        if alias.convert is not None:
            converted.append((trl, alias))
    given = {**field_defaults(cls), **out}  # a conversion may read another setting
    for trl, alias in converted:
        try:
            out[alias.field] = given[alias.field] = alias.convert(out[alias.field], given)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}{trl}={out[alias.field]!r}: {err}") from None
    return out


LOCAL_ROOTS = ("runs", "results")  # the project's output folders (git-ignored)


def names_a_local_path(name: str) -> bool:
    """Whether a model name can only mean a folder on this machine (so a missing one is an
    error now, not a minute of hub retries): absolute or ./ ../ ~ paths, a path under the
    project's output roots, or one whose first folder exists here."""
    parts = Path(name).parts
    if not parts or name.startswith(("/", "./", "../", "~")):
        return bool(parts)
    return len(parts) > 2 or (
        len(parts) > 1 and (parts[0] in LOCAL_ROOTS or Path(parts[0]).is_dir())
    )


def require_lr_scheduler(obj: Any, name: str = "lr_scheduler_type") -> None:
    """Raise :class:`ConfigError` when field ``name`` is not a transformers schedule name."""
    from transformers import SchedulerType

    valid = [t.value for t in SchedulerType]
    require(getattr(obj, name) in valid, obj, name, f"must be one of {valid}")


def require_model_path(obj: Any, name: str, made_by: str) -> None:
    """Raise :class:`ConfigError` when field ``name`` names a local model folder that does not
    exist, saying which stage makes it (``made_by``); hub names pass through."""
    value = getattr(obj, name)
    if value and names_a_local_path(value) and not Path(value).expanduser().exists():
        raise ConfigError(
            f"{type(obj).__name__}: {name}={value!r} does not exist; it is made by {made_by}"
        )


def with_aliases(cls: type[T]) -> type[T]:
    """Class decorator: the dataclass's ``__init__`` accepts the old names in ``cls.ALIASES``
    (with a notice) and TRL's names in ``cls.TRL_NAMES`` (silently, converted)."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **resolve_aliases(cls, kwargs))

    cls.__init__ = __init__
    return cls


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping (empty file: ``{}``), read with ``yaml.safe_load``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError as err:  # a binary file given by mistake
        raise ConfigError(
            f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    return data


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
    name = getattr(tp, "__name__", str(tp))
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


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


def _init_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def check_keys(classes: type | tuple[type, ...], values: dict[str, Any], source: str) -> None:
    """Raise naming any key that is not a field (or alias) of one of ``classes``."""
    classes = classes if isinstance(classes, tuple) else (classes,)
    valid = {name for cls in classes for name in _init_fields(cls) + list(other_names_of(cls))}
    valid |= {name for cls in classes for name in getattr(cls, "TRL_UNSUPPORTED", {})}
    unknown = sorted(set(values) - valid)
    if unknown:
        names = " / ".join(cls.__name__ for cls in classes)
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} for {names}; valid keys: "
            f"{sorted(name for cls in classes for name in _init_fields(cls))}"
        )


def load_yaml_config(path: str | Path, cls: type | tuple[type, ...]) -> dict[str, Any]:
    """Read a YAML mapping and reject keys that are not fields of ``cls`` (or of any of them)."""
    data = load_yaml(path)
    check_keys(cls, data, str(path))
    return data


def split_values(
    classes: tuple[type, ...], values: dict[str, Any], source: str
) -> list[dict[str, Any]]:
    """Deal the keys of ``values`` out to the classes whose field (or alias) they name."""
    check_keys(classes, values, source)
    parts: list[dict[str, Any]] = [{} for _ in classes]
    for key, value in values.items():
        for part, cls in zip(parts, classes):
            if (
                key in _init_fields(cls)
                or key in other_names_of(cls)
                or key in getattr(cls, "TRL_UNSUPPORTED", {})
            ):
                part[key] = value
                break
    return parts


def _rename_alias_flags(classes: tuple[type, ...], argv: list[str]) -> list[str]:
    """``--old value`` / ``--old=value`` -> the field's flag, with a one-line notice."""
    renames = {old: new for cls in classes for old, new in aliases_of(cls).items()}
    out = []
    for arg in argv:
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in renames:
            warnings.warn(
                f"flag --{name} is deprecated; use --{renames[name]}", FutureWarning, stacklevel=3
            )
            arg = f"--{renames[name]}{eq}{value}"
        out.append(arg)
    return out


def _flag_value(text: str) -> Any:
    """A TRL-named flag's value as a YAML file would hold it: int, float, bool or string
    (converted and type-checked later by the field's :class:`TrlName`, like a YAML value)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _parse_trl_flags(classes: tuple[type, ...], argv: list[str]) -> tuple[dict[str, Any], list]:
    """``--trl_name value [value ...]`` flags -> ``{trl_name: value}`` (a list when several
    values follow), and the remaining arguments. TRL's names are not fields, so
    ``HfArgumentParser`` does not know them; they go through the same conversion as in a
    YAML file."""
    names = {n for c in classes for n in [*trl_names_of(c), *getattr(c, "TRL_UNSUPPORTED", {})]}
    if not names:
        return {}, argv
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.error = _raise_config_error  # type: ignore[method-assign]
    for name in sorted(names):
        parser.add_argument(f"--{name}", nargs="+", type=_flag_value, default=_UNSET)
    given, rest = parser.parse_known_args(argv)
    values = {k: v[0] if len(v) == 1 else v for k, v in vars(given).items() if v is not _UNSET}
    return values, rest


def _override(classes: tuple[type, ...], values: dict[str, Any], flags: dict[str, Any]) -> None:
    """Flags win over the YAML file, whichever spelling either uses: drop the file's other
    spellings of each flag's setting, then add the flags."""
    spelling = {n: f for c in classes for n, f in other_names_of(c).items()}
    for key in flags:
        setting = spelling.get(key, key)
        for other in [k for k in values if spelling.get(k, k) == setting]:
            del values[other]
    values.update(flags)


def trl_names_help(classes: tuple[type, ...]) -> str:
    """One line for ``--help``: the TRL names the recipe also accepts."""
    pairs = [f"{n} (= {a.field})" for c in classes for n, a in trl_names_of(c).items()]
    return f"TRL's names are accepted too: {', '.join(pairs)}." if pairs else ""


def describe_recipe_flags(parser: argparse.ArgumentParser) -> None:
    """What a recipe's ``--help`` shows besides the fields' own help (``metadata["help"]``):
    ``--config`` (read before the other flags), and for each ``--no_x`` flag
    (``HfArgumentParser``'s complement of a bool field that defaults to true) what it turns
    off."""
    for action in parser._actions:
        flag = action.option_strings[0] if action.option_strings else ""
        if flag.startswith("--no_") and action.const is False:
            action.help = f"set {action.dest} to false"
            action.default = argparse.SUPPRESS  # the field's flag shows the default
    config = parser.add_argument(
        "--config", default=argparse.SUPPRESS, help="YAML file of settings; flags override it"
    )
    for actions in (parser._actions, parser._optionals._group_actions):  # listed after --help
        actions.remove(config)
        actions.insert(1, config)


def _raise_config_error(message: str) -> None:
    """``ArgumentParser.error`` replacement: one ConfigError line instead of usage + exit."""
    raise ConfigError(f"command line: {message}")


def parse_recipe_args(cls: type[T] | tuple[type, ...], argv: list[str] | None = None) -> Any:
    """``[--config FILE.yaml] [--field value ...]`` -> a checked ``cls`` instance (or, given a
    tuple of classes, a tuple of instances, each key going to the class that has the field).

    Flags are defined and converted by ``HfArgumentParser``; TRL's names (``TRL_NAMES``) are
    read as YAML values would be. Only the flags actually given override the YAML, whatever
    spelling either uses. Every value, from the file or a flag, then goes through
    :func:`config_from_dict`, so any mistake (unknown key, bad flag value, wrong type, out
    of range) is one :class:`ConfigError` line. ``--help`` still prints and exits.
    """
    import sys

    from transformers import HfArgumentParser

    classes = cls if isinstance(cls, tuple) else (cls,)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    values = load_yaml_config(known.config, classes) if known.config is not None else {}
    trl_flags, rest = _parse_trl_flags(classes, rest)
    parser = HfArgumentParser(classes, epilog=trl_names_help(classes) or None)
    parser.error = _raise_config_error  # type: ignore[method-assign]
    describe_recipe_flags(parser)
    if {"-h", "--help"} & set(rest):  # before the not-given marker replaces the defaults
        parser.parse_args(["--help"])  # prints, exits
    # A non-string sentinel default marks flags not given (argparse would parse a string one).
    parser.set_defaults(**{f.name: _UNSET for c in classes for f in dataclasses.fields(c)})
    given, unknown = parser.parse_known_args(_rename_alias_flags(classes, rest))
    if unknown:
        names = " / ".join(c.__name__ for c in classes)
        raise ConfigError(f"unknown argument(s) {unknown} for {names}")
    flags = {k: v for k, v in vars(given).items() if v is not _UNSET and k != "config"}
    _override(classes, values, {**flags, **trl_flags})
    source = known.config or "command line"
    parts = split_values(classes, values, source)
    built = tuple(config_from_dict(c, part, source) for c, part in zip(classes, parts))
    return built if isinstance(cls, tuple) else built[0]


def config_from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """A checked ``cls`` from a dict: unknown keys, values of the wrong type (checked against
    the annotations, for classes whose ``__post_init__`` does not) and the class's own range
    checks all raise one :class:`ConfigError` line naming ``source``."""
    check_keys(cls, values, source)
    values = resolve_aliases(cls, values, source)
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        ok, converted = conforms(value, hints[key])
        if not ok:
            raise ConfigError(
                f"{source}: {key}={value!r} is invalid; expected {describe_type(hints[key])}"
            )
        values[key] = converted
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:  # a class that validates with plain ValueErrors
        raise ConfigError(f"{source}: {err}") from None
