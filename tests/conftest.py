"""Suite-wide settings: headless rendering, one torch thread per xdist worker, hypothesis profile."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as rlhf_pg/__init__.py, for subprocesses

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# `make test` runs two xdist workers on a 2-core machine: one thread each avoids oversubscription
torch.set_num_threads(1)

settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci")


@pytest.fixture
def stage_outputs(tmp_path, monkeypatch):
    """A working folder holding the earlier stages' outputs the shipped recipe configs name
    (``runs/sft_sentiment`` ...), so that the configs parse as they do after those stages."""
    monkeypatch.chdir(tmp_path)
    for stage in ("sft_sentiment", "rm_sentiment", "sft_arithmetic", "sft_chat_arithmetic"):
        (tmp_path / "runs" / stage).mkdir(parents=True)
    return tmp_path
