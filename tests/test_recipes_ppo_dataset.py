"""Bring your own data through ``recipes/ppo.py``: a conversational prompt dataset with an
``answer`` column, a reward function from a file that reads ``answer``, evaluation on the
test split with a completions table; and the one-line errors (exit 2) on bad data, before
any model is loaded."""

import json
import re
import runpy
from pathlib import Path

import pandas as pd
import pytest
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from lm_fixtures import make_policy, make_tokenizer
from model_families import save_family

import rlhf_pg.stages.ppo
from rlhf_pg.lm import PPOConfig, PPOTrainer
from rlhf_pg.stages.ppo import publish_evaluation
from rlhf_pg.tasks.datasets import load_any_dataset
from rlhf_pg.utils.config import ConfigError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TRAIN = [("what is twelve plus seven", "nineteen"), ("i loved the music", "story")] * 3
TEST = [("the movie was great", "wonderful"), ("the film was terrible", "boring")]
REWARD_SOURCE = """
import json

def correct(prompts, completions, answer, **kwargs):
    with open({log!r}, "a") as f:
        for conversation, a in zip(prompts, answer):
            f.write(json.dumps({{"question": conversation[-1]["content"], "answer": a}}) + "\\n")
    return [float(a in c[0]["content"]) for c, a in zip(completions, answer)]
"""


def _rows(pairs):
    return [
        {"prompt": [{"role": "system", "content": "the film"}, {"role": "user", "content": q}],
         "answer": a}
        for q, a in pairs
    ]  # fmt: skip


def _write_jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    return save_family("qwen2", tmp_path_factory.mktemp("models") / "qwen2")


@pytest.fixture
def chat_data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", _rows(TRAIN))
    _write_jsonl(folder / "test.jsonl", _rows(TEST))
    return folder


def _main():
    return runpy.run_path(str(RECIPES / "ppo.py"))["main"]


def _args(model, data, reward_fn, out, *extra):
    return [
        "--task", "dataset", "--model_name_or_path", str(model), "--dataset_name", str(data),
        "--dataset_test_split", "test", "--reward_fn", reward_fn,
        "--estimator", "grpo", "--samples_per_prompt", "2", "--batch_size", "2",
        "--max_steps", "2", "--eval_every", "1", "--eval_samples", "1", "--max_new_tokens", "4",
        "--use_cpu", "true", "--progress_bar", "false", "--output_dir", str(out), *extra,
    ]  # fmt: skip


def test_conversational_dataset_with_answer_trains_end_to_end(qwen2, chat_data, tmp_path):
    log = tmp_path / "calls.jsonl"
    (tmp_path / "my_reward.py").write_text(REWARD_SOURCE.format(log=str(log)))
    out = tmp_path / "run"
    assert _main()(_args(qwen2, chat_data, f"{tmp_path}/my_reward.py:correct", out)) == 0

    results = json.loads((out / "ppo_results.json").read_text())
    assert [h["step"] for h in results["history"]] == [1, 2]
    assert all("reward/correct" in h for h in results["history"])
    # every call saw each conversation's own answer (training and test rows alike)
    answer_of = dict(TRAIN + TEST)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2 * 2 * 2 + 3 * 2  # 2 steps x 2 prompts x 2 samples, 3 evals x 2
    assert all(c["answer"] == answer_of[c["question"]] for c in calls)
    # evaluations on the test split: reward-independent metrics next to the reward
    evals = results["evals"]
    assert [e["step"] for e in evals] == [0, 1, 2]
    for e in evals:
        assert 0.0 <= e["eos_rate"] <= 1.0 and 1 <= e["response_length"] <= 4
        assert {"kl_seq", "proxy", "reward/correct"} <= set(e)
        assert "completions" not in e  # the table goes to completions.jsonl
    # the completions table: every test prompt at every evaluation, scored as the reward says
    table = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert [r["step"] for r in table] == [0, 0, 1, 1, 2, 2]
    test_rows = _rows(TEST)
    for row in table:
        assert row["prompt"] in [r["prompt"] for r in test_rows]
        answer = answer_of[row["prompt"][-1]["content"]]
        assert row["reward/correct"] == float(answer in row["completion"]) == row["proxy"]
        assert isinstance(row["kl"], float)
    assert evals[0]["proxy"] == pytest.approx(
        sum(r["proxy"] for r in table[:2]) / 2
    )  # the eval's mean is the table's
    assert (out / "policy" / "config.json").is_file()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def no_model_loading(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded although the data is invalid")

    monkeypatch.setattr(rlhf_pg.stages.ppo, "load_policy", boom)
    monkeypatch.setattr(rlhf_pg.stages.ppo, "build_reward", boom)


def _reward_file(tmp_path, source="def correct(prompts, completions, answer):\n    return [0.0]"):
    (tmp_path / "r.py").write_text(source + "\n")
    return f"{tmp_path}/r.py:correct"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt": "question"}, "no 'prompt' column .*'question'"),
        ({"answer": "solution"}, r"correct needs argument\(s\) \['answer'\]"),
        ({"split": "validation"}, "has no split 'validation'"),
        ({"prompt_value": 7}, "column 'prompt' row 0 is int"),
        ({"reward_fn": "no_such_module_xyz:correct"}, "importing 'no_such_module_xyz' failed"),
        ({"reward_fn": "r.py"}, "reward_fn='r.py' is not valid"),
        ({"model": "gpt2"}, "holds conversations but the tokenizer has no chat_template"),
        ({"reward_fn": "exact_match"}, "'exact_match' reads text prompts, but 'prompt' holds conv"),
    ],
)
def test_bad_data_is_one_line_with_exit_2_before_models_load(
    tmp_path, qwen2, change, message, capsys, no_model_loading
):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [
        {change.get("prompt", "prompt"): change.get("prompt_value", r["prompt"]),
         change.get("answer", "answer"): r["answer"]}
        for r in _rows(TRAIN)
    ]  # fmt: skip
    _write_jsonl(folder / "train.jsonl", rows)
    _write_jsonl(folder / "test.jsonl", rows)
    model = save_family("gpt2", tmp_path / "gpt2") if change.get("model") else qwen2
    reward_fn = change.get("reward_fn", _reward_file(tmp_path))
    args = _args(model, folder, reward_fn, tmp_path / "out")
    args[args.index("--dataset_test_split") + 1] = change.get("split", "test")
    capsys.readouterr()  # what saving the fixture printed
    assert _main()(args) == 2
    assert re.search(message, _one_error_line(capsys))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("suffix", ["json", "jsonl", "csv", "parquet"])
def test_local_files_load_in_every_format(tmp_path, suffix):
    frame = pd.DataFrame({"prompt": ["a b", "c d", "e"], "answer": ["one", "two", "three"]})
    path = tmp_path / f"prompts.{suffix}"
    if suffix == "csv":
        frame.to_csv(path, index=False)
    elif suffix == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=suffix == "jsonl")
    data = load_any_dataset(str(path))
    assert data["prompt"][:] == list(frame["prompt"]) and data["answer"][:] == list(frame["answer"])
    with pytest.raises(ConfigError, match="has no split 'test'.*train"):
        load_any_dataset(str(path), "test")


def test_save_to_disk_dataset_dict_gives_the_named_split(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict(
        {
            "train": Dataset.from_dict({"prompt": ["a"]}),
            "test": Dataset.from_dict({"prompt": ["b"]}),
        }
    ).save_to_disk(str(tmp_path / "dd"))
    assert load_any_dataset(str(tmp_path / "dd"), "test")["prompt"][:] == ["b"]
    with pytest.raises(ConfigError, match="has no split 'dev'"):
        load_any_dataset(str(tmp_path / "dd"), "dev")


class ScalarTracker(GeneralTracker):
    """A tracker without tables (as TensorBoard), recording the scalars it receives."""

    name = "scalar_recorder"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.scalars = []

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values):
        pass

    def log(self, values, step=None, **kwargs):
        self.scalars.append((step, dict(values)))


class TableTracker(ScalarTracker):
    """A tracker that can show tables (as W&B)."""

    name = "table_recorder"

    def __init__(self):
        super().__init__()
        self.tables = []

    def log_table(self, table_name, columns=None, data=None, dataframe=None, step=None, **kw):
        self.tables.append((table_name, columns, data, step))


def test_evaluation_goes_to_jsonl_and_to_trackers_that_show_tables(tmp_path):
    table_tracker, scalar_tracker = TableTracker(), ScalarTracker()
    acc = Accelerator(cpu=True, log_with=[table_tracker, scalar_tracker])
    acc.init_trackers("test")
    tok = make_tokenizer()
    trainer = PPOTrainer(
        PPOConfig(batch_size=2, use_cpu=True, progress_bar=False, output_dir=str(tmp_path / "run")),
        make_policy(tok), tok, accelerator=acc,
    )  # fmt: skip
    table = [
        {"prompt": [{"role": "user", "content": "hi"}], "completion": "a", "reward/r": 1.0},
        {"prompt": [{"role": "user", "content": "yo"}], "completion": "b", "reward/r": None},
    ]
    publish_evaluation(trainer, {"step": 3, "proxy": 0.5, "eos_rate": 1.0}, table)
    publish_evaluation(trainer, {"step": 4, "proxy": 0.0}, table[:1])
    lines = (tmp_path / "run" / "completions.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 3, **table[0]}, {"step": 3, **table[1]}, {"step": 4, **table[0]}
    ]  # fmt: skip
    name, columns, data, step = table_tracker.tables[0]
    assert (name, step, columns) == ("eval/completions", 3, ["prompt", "completion", "reward/r"])
    assert data[1] == [json.dumps(table[1]["prompt"]), "b", None]
    assert [t[3] for t in table_tracker.tables] == [3, 4]
    for tracker in (table_tracker, scalar_tracker):
        assert tracker.scalars == [(3, {"eval/proxy": 0.5, "eval/eos_rate": 1.0}),
                                   (4, {"eval/proxy": 0.0})]  # fmt: skip
    trainer.end_training()
