"""Reward callables the PPO recipe can name: a reward model or a multi-label classifier
(both from :mod:`rlhf_pg.hf.scoring`, by path), a built-in function, your own function as
``module:function`` or ``path/to/file.py:function``, or a weighted combination, in the
``[(weight, fn), ...]`` form :class:`rlhf_pg.lm.CombinedReward` takes.

Your function is called as :mod:`rlhf_pg.lm.rewards` describes: ``fn(prompts, completions,
**kwargs)`` with the prompt dataset's other columns (e.g. ``answer``) and ``completion_ids``
as keyword arguments, as many as its signature names. Importing it runs its module: name
only code you trust, as with any Python import.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..hf.scoring import load_reward_model
from ..tasks.arithmetic import exact_match_reward
from ..tasks.chat_arithmetic import answer_exact_match
from ..tasks.gold import gold_reward
from ..utils.config import ConfigError

REWARD_FUNCTIONS: dict[str, Callable] = {
    "exact_match": exact_match_reward,  # "a+b=" prompts: the answer is solved from the prompt
    "answer_exact_match": answer_exact_match,  # any prompts: reads the dataset's answer column
    "vader": gold_reward,
}
# built-ins that read prompts as text (a sum "12+7=", a review): not for conversations
TEXT_ONLY_REWARDS = ("exact_match", "vader")
REWARD_FN_FORMS = (
    f"'none', a built-in ({', '.join(REWARD_FUNCTIONS)}), 'module:function' (importable from "
    "the working directory or PYTHONPATH) or 'path/to/file.py:function'"
)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _import_module(spec: str, module: str):
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise ConfigError(f"reward_fn={spec!r}: no file {module!r}; give {REWARD_FN_FORMS}")
        name = f"rlhf_pg_user_reward_{abs(hash(str(path.resolve())))}"
        if name in sys.modules:
            return sys.modules[name]
        loader_spec = importlib.util.spec_from_file_location(name, path)
        loaded = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = loaded
        loader_spec.loader.exec_module(loaded)
        return loaded
    if os.getcwd() not in sys.path and "" not in sys.path:  # a script's path[0] is its folder
        sys.path.append(os.getcwd())
    return importlib.import_module(module)


def resolve_reward_fn(spec: str) -> Callable | None:
    """The callable ``reward_fn`` names (None for ``'none'``); a name that does not resolve
    is one :class:`ConfigError` line."""
    if spec == "none":
        return None
    if spec in REWARD_FUNCTIONS:
        return REWARD_FUNCTIONS[spec]
    module, sep, attr = spec.rpartition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"reward_fn={spec!r} is not valid; give {REWARD_FN_FORMS}")
    try:
        loaded = _import_module(spec, module)
    except ConfigError:
        raise
    except Exception as err:  # the user's module failed to import: say why, in one line
        raise ConfigError(
            f"reward_fn={spec!r}: importing {module!r} failed ({_first_line(err)}); give "
            f"{REWARD_FN_FORMS}"
        ) from None
    fn = getattr(loaded, attr, None)
    if not callable(fn):
        raise ConfigError(
            f"reward_fn={spec!r}: {module!r} has no function {attr!r} "
            f"(found {type(fn).__name__}); give {REWARD_FN_FORMS}"
        )
    return fn


def build_reward(args, device="cpu") -> list[tuple[float, Callable]]:
    """The weighted reward list of a :class:`~rlhf_pg.stages.ppo_args.PPORecipeArgs`."""
    parts: list[tuple[float, Callable]] = []
    if args.reward_model_path is not None:
        rm = load_reward_model(args.reward_model_path, args.reward_model_label, device)
        parts.append((args.reward_model_weight, rm))
    fn = resolve_reward_fn(args.reward_fn)
    if fn is not None:
        parts.append((args.reward_fn_weight, fn))
    return parts
