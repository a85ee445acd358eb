"""Loading text and preference data from a hub name or a local folder, with column checks.

The same call serves the hub setup (``load_dataset("stanfordnlp/imdb")`` on a machine that
can reach the hub) and the local stand-ins used by the tests: a folder of json/jsonl/parquet
files, or one written by ``Dataset.save_to_disk``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from datasets import Dataset, load_dataset, load_from_disk

from ..utils.config import ConfigError


def require_columns(dataset: Dataset, columns: list[str], what: str) -> None:
    """Fail with a message naming the missing columns and the ones the dataset has."""
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ConfigError(
            f"{what}: dataset is missing column(s) {missing}; it has {dataset.column_names}. "
            f"Expected columns: {columns}"
        )


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def load_any_dataset(name: str, split: str = "train") -> Dataset:
    """A hub dataset name, a folder saved with ``save_to_disk``, or a folder/file of json/parquet."""
    path = Path(name)
    if path.is_dir() and (path / "state.json").is_file():
        return load_from_disk(str(path))
    if path.is_file():
        kind = "parquet" if path.suffix == ".parquet" else "json"
        with _no_progress_bars():  # a local file loads in an instant; keep stderr for errors
            return load_dataset(kind, data_files=str(path), split=split)
    return load_dataset(name, split=split)


def load_texts(name: str, split: str, column: str, max_samples: int | None = None) -> list[str]:
    """The ``column`` of a dataset as a list of strings, checked to exist."""
    dataset = load_any_dataset(name, split)
    require_columns(dataset, [column], f"text dataset {name!r}")
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return [str(t) for t in dataset[column]]
