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


LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def load_any_dataset(name: str, split: str = "train", config: str | None = None) -> Dataset:
    """One split of a hub dataset (``name``, ``config``), a folder saved with
    ``save_to_disk`` (a Dataset or a DatasetDict), a json/jsonl/csv/parquet file (split
    ``train``), or a folder of such files (splits from the file names, e.g. ``train.jsonl``
    and ``test.jsonl``). A split the dataset lacks is a :class:`ConfigError` naming the ones
    it has."""
    path = Path(name)
    try:
        with _no_progress_bars() if path.exists() else contextlib.nullcontext():
            if path.is_dir() and (path / "state.json").is_file():
                return load_from_disk(str(path))
            if path.is_dir() and (path / "dataset_dict.json").is_file():
                splits = load_from_disk(str(path))
                if split not in splits:
                    raise ValueError(f"Unknown split {split!r}. Should be one of {list(splits)}.")
                return splits[split]
            if path.is_file():
                kind = LOCAL_FORMATS.get(path.suffix.lower())
                if kind is None:
                    raise ConfigError(
                        f"dataset file {name!r}: unknown format {path.suffix!r}; use one of "
                        f"{', '.join(LOCAL_FORMATS)} or a folder saved with save_to_disk"
                    )
                return load_dataset(kind, data_files=str(path), split=split)
            return load_dataset(name, config, split=split)
    except ValueError as err:
        if "Unknown split" not in str(err):
            raise
        raise ConfigError(f"dataset {name!r} has no split {split!r}: {err}") from None


def load_texts(name: str, split: str, column: str, max_samples: int | None = None) -> list[str]:
    """The ``column`` of a dataset as a list of strings, checked to exist."""
    dataset = load_any_dataset(name, split)
    require_columns(dataset, [column], f"text dataset {name!r}")
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return [str(t) for t in dataset[column]]
