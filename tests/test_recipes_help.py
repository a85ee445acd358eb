"""Every recipe's --help lists --config and describes every flag with its real default."""

from __future__ import annotations

import argparse
import runpy
from pathlib import Path

import pytest

import rlhf_pg.utils.config as config_module

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _help_of(recipe: Path, monkeypatch, capsys) -> tuple[argparse.ArgumentParser, str]:
    """Run ``recipe --help``; returns the parser it built and the text it printed."""
    built = []
    describe = config_module.describe_recipe_flags

    def capture(parser):
        built.append(parser)
        describe(parser)

    monkeypatch.setattr(config_module, "describe_recipe_flags", capture)
    monkeypatch.setattr("sys.argv", [str(recipe), "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(recipe), run_name="__main__")
    assert exit_info.value.code in (0, None)
    assert len(built) == 1
    return built[0], capsys.readouterr().out


@pytest.mark.parametrize("name", ["sft", "reward_model", "evaluate", "ppo"])
def test_every_recipe_flag_has_help_and_config_is_listed(name, monkeypatch, capsys):
    parser, text = _help_of(RECIPES / f"{name}.py", monkeypatch, capsys)
    undescribed = [
        action.option_strings[0]
        for action in parser._actions
        if action.option_strings and not (action.help or "").strip()
    ]
    assert not undescribed, f"recipes/{name}.py flags without help: {undescribed}"
    flags = [s for action in parser._actions for s in action.option_strings]
    assert "--config" in flags
    assert "--config CONFIG" in text
    # defaults are the fields' own, not the marker that tells given flags from the rest
    assert "<object object" not in text
    assert "(default: " in text


def test_no_flag_says_what_it_turns_off(monkeypatch, capsys):
    _, text = _help_of(RECIPES / "sft.py", monkeypatch, capsys)
    flat = " ".join(text.split())
    assert "--no_progress, --no-progress set progress to false" in flat
