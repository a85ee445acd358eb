"""Model cards and the Hugging Face Hub: what every saved model folder says about itself.

Every stage that saves a model (SFT, reward model, PPO policy) writes a ``README.md`` model
card into the folder with :func:`write_model_card` (huggingface_hub's ``ModelCard``: YAML
metadata the hub reads, then base model, data, the training config, metrics and, for the
demo, its report). :func:`push_folder` uploads a finished folder with
``HfApi.upload_folder``; the recipes call it when ``push_to_hub`` is set (:class:`HubArgs`,
TRL's names). The upload is one library call on purpose: authentication, retries and large
files are huggingface_hub's business (``hf auth login`` or ``HF_TOKEN``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..utils.config import check_types, names_a_local_path, require
from ..utils.io import atomic_write_text

CARD_NAME = "README.md"  # where the hub looks for a model card


@dataclass
class HubArgs:
    """Publishing a recipe's model (TRL's names): ``--push_to_hub true --hub_model_id me/name``."""

    push_to_hub: bool = field(
        default=False, metadata={"help": "upload the saved model folder to the Hub when done"}
    )
    hub_model_id: str | None = field(
        default=None, metadata={"help": "the Hub repository, e.g. your-name/gpt2-sft"}
    )
    hub_private_repo: bool | None = field(
        default=None, metadata={"help": "create the repository private; default: the Hub's"}
    )

    def __post_init__(self) -> None:
        check_types(self)
        require(
            not self.push_to_hub or bool(self.hub_model_id),
            self,
            "hub_model_id",
            "must name the repository (user/name) when push_to_hub is true",
        )


def _hub_names(names: list[str]) -> list[str]:
    """Only names the hub can resolve go into the card's metadata (local folders go in the text)."""
    return [n for n in names if n and not names_a_local_path(n) and not Path(n).exists()]


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = [
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in metrics.items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool)
    ]
    return "| metric | value |\n|---|---|\n" + "\n".join(rows) if rows else "(none recorded)"


def model_card_text(
    *,
    title: str,
    stage: str,
    base_model: str | None,
    datasets: list[str],
    config: dict[str, Any],
    metrics: dict[str, Any],
    report: str | None = None,
    library_name: str = "transformers",
) -> str:
    """The card as text: hub metadata (``ModelCardData``) and the sections a reader needs to
    reproduce and judge the model. ``datasets``: hub names or a description of the data
    (generated corpora are described, not named; empty: not recorded). ``library_name``:
    ``peft`` for a folder of LoRA adapters."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        library_name=library_name,
        base_model=(_hub_names([base_model]) or [None])[0] if base_model else None,
        datasets=_hub_names(datasets) or None,
        tags=["rlhf-pg", stage],
        model_name=title,
    )
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {title}",
        "",
        f"Trained with rlhf-pg ({stage} stage).",
        "",
        "## Base model",
        "",
        f"`{base_model}`" if base_model else "None: initialised from scratch (random weights).",
        "",
        "## Training data",
        "",
        *([f"- {d}" for d in datasets] or ["Not recorded (prompts were passed in Python)."]),
        "",
        "## Training configuration",
        "",
        "```yaml",
        yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False).strip(),
        "```",
        "",
        "## Metrics",
        "",
        _metrics_table(metrics),
        "",
    ]
    if report:
        lines += ["## Report", "", report.strip(), ""]
    return "\n".join(lines)


def write_model_card(folder: str | Path, **kwargs: Any) -> Path:
    """Write :func:`model_card_text` as ``folder/README.md`` (atomically); returns its path.
    The text is parsed back with ``ModelCard`` first, so the metadata is valid for the hub."""
    from huggingface_hub import ModelCard

    text = model_card_text(**kwargs)
    ModelCard(text, ignore_metadata_errors=False)  # raises on metadata the hub would reject
    path = Path(folder) / CARD_NAME
    atomic_write_text(path, text)
    return path


def push_folder(folder: str | Path, hub: HubArgs, what: str) -> str:
    """Upload a saved model folder to ``hub.hub_model_id`` (created if missing); returns the
    commit URL. Hidden files (locks, completion markers) stay here."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(hub.hub_model_id, private=hub.hub_private_repo, exist_ok=True)
    commit = api.upload_folder(
        repo_id=hub.hub_model_id,
        folder_path=str(folder),
        commit_message=f"rlhf-pg: {what}",
        ignore_patterns=[".*", "**/.*"],
    )
    return str(getattr(commit, "commit_url", commit))


def push_if_asked(folder: str | Path, hub: HubArgs, what: str) -> int:
    """The recipes' last step: upload ``folder`` when ``hub.push_to_hub``; returns the exit
    code. A failed upload is one line and code 1; the folder stays as it is."""
    if not hub.push_to_hub:
        return 0
    try:
        print(f"pushed to the Hub: {push_folder(folder, hub, what)}")
    except Exception as err:  # network, authentication, permissions: huggingface_hub's errors
        print(
            f"error: push to {hub.hub_model_id} failed ({err}); {folder} is kept", file=sys.stderr
        )
        return 1
    return 0
