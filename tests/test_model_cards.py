"""Model cards in saved model folders, and ``push_to_hub`` as one thin call to huggingface_hub
(the Hub is mocked: no upload happens here)."""

import runpy
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import ModelCard

import rlhf_pg.stages.sft
from rlhf_pg.hf.hub import HubArgs, push_if_asked, write_model_card
from rlhf_pg.lm import PPOConfig
from rlhf_pg.stages.ppo import write_policy_card
from rlhf_pg.stages.ppo_args import PPORecipeArgs
from rlhf_pg.utils.config import ConfigError

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def test_card_holds_base_model_data_config_and_metrics(tmp_path):
    local = tmp_path / "runs" / "sft"
    local.mkdir(parents=True)
    path = write_model_card(
        tmp_path,
        title="T",
        stage="sft",
        base_model="Qwen/Qwen2.5-0.5B",
        datasets=["trl-lib/tldr", str(local)],
        config={"learning_rate": 0.001, "report_to": ["tensorboard"]},
        metrics={"eval_loss_after": 1.23456, "history": [1, 2]},
    )
    card = ModelCard.load(path)
    # the hub metadata names hub ids only; a local folder is in the text
    assert card.data.base_model == "Qwen/Qwen2.5-0.5B" and card.data.datasets == ["trl-lib/tldr"]
    assert card.data.library_name == "transformers" and "sft" in card.data.tags
    assert f"- {local}" in card.text and "learning_rate: 0.001" in card.text
    assert "| eval_loss_after | 1.235 |" in card.text and "history" not in card.text


def test_ppo_policy_card_has_the_runs_figures_and_the_demos_report(tmp_path):
    args = PPORecipeArgs(model_name_or_path="gpt2", reward_fn="vader")
    config = PPOConfig(estimator="rloo", samples_per_prompt=2, max_steps=5)
    results = {
        "evals": [{"step": 0, "proxy": 0.1, "kl_seq": 0.0}, {"step": 5, "proxy": 0.5, "kl_seq": 2}],
        "history": [],
    }
    report = "# rlhf-pg demo report\n\nGold rose.\n![proxy](proxy_reward.png)\n"
    card = ModelCard.load(write_policy_card(tmp_path, args, config, results, report))
    assert card.data.base_model == "gpt2" and "rloo" in card.data.tags
    assert "| proxy_before | 0.1 |" in card.text and "| proxy_after | 0.5 |" in card.text
    assert "## Report" in card.text and "Gold rose." in card.text
    assert "![proxy]" not in card.text  # the report's plots live beside the report, not here
    assert "samples_per_prompt: 2" in card.text and "reward_fn: vader" in card.text


class FakeHfApi:
    calls: list = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return "https://hub/commit/1"


@pytest.fixture
def fake_hub(monkeypatch):
    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi.calls


def test_push_is_one_upload_of_the_folder(tmp_path, fake_hub, capsys):
    hub = HubArgs(push_to_hub=True, hub_model_id="me/model", hub_private_repo=True)
    assert push_if_asked(tmp_path, hub, "SFT model") == 0
    (_, repo, kw), (_, upload) = fake_hub
    assert repo == "me/model" and kw == {"private": True, "exist_ok": True}
    assert upload["repo_id"] == "me/model" and upload["folder_path"] == str(tmp_path)
    assert ".*" in upload["ignore_patterns"]  # locks and completion markers stay here
    assert "https://hub/commit/1" in capsys.readouterr().out
    fake_hub.clear()
    assert push_if_asked(tmp_path, HubArgs(), "SFT model") == 0 and fake_hub == []


def test_a_failed_push_is_one_line_and_keeps_the_folder(tmp_path, monkeypatch, capsys):
    class Offline(FakeHfApi):
        def create_repo(self, repo_id, **kwargs):
            raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    (tmp_path / "model.safetensors").write_text("x")
    assert push_if_asked(tmp_path, HubArgs(push_to_hub=True, hub_model_id="me/m"), "RM") == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: push to me/m failed (no network)")
    assert (tmp_path / "model.safetensors").read_text() == "x"


def test_push_needs_a_repository_name():
    with pytest.raises(ConfigError, match="hub_model_id=None must name the repository"):
        HubArgs(push_to_hub=True)


def test_sft_recipe_pushes_the_saved_folder(tmp_path, monkeypatch, fake_hub, capsys):
    saved = tmp_path / "sft"
    saved.mkdir()
    monkeypatch.setattr(rlhf_pg.stages.sft, "train_sft", lambda cfg: saved)
    main = runpy.run_path(str(RECIPES / "sft.py"))["main"]
    assert main(["--push_to_hub", "true", "--hub_model_id", "me/sft", "--use_cpu", "true"]) == 0
    assert fake_hub[-1][1]["folder_path"] == str(saved)
    # asked to push without a repository: exit 2 before any training
    monkeypatch.setattr(rlhf_pg.stages.sft, "train_sft", lambda cfg: pytest.fail("trained"))
    main = runpy.run_path(str(RECIPES / "sft.py"))["main"]
    assert main(["--push_to_hub", "true"]) == 2
    assert "hub_model_id=None must name" in capsys.readouterr().err


def test_ppo_recipe_refuses_push_without_a_saved_policy(tmp_path, capsys):
    main = runpy.run_path(str(RECIPES / "ppo.py"))["main"]
    argv = ["--model_name_or_path", "gpt2", "--reward_fn", "vader", "--push_to_hub", "true"]
    argv += ["--hub_model_id", "me/p"]
    assert main(argv) == 2
    assert "push_to_hub needs save_policy true and an output_dir" in capsys.readouterr().err


@pytest.mark.parametrize("use_lora", [False, True])
def test_trainer_save_pretrained_writes_a_card(tmp_path, use_lora):
    from lm_fixtures import make_trainer

    trainer = make_trainer(reward=lambda p, c: [1.0] * len(c), use_lora=use_lora, update_epochs=1)
    trainer.train(num_steps=1)
    trainer.save_pretrained(str(tmp_path / "policy"))
    card = ModelCard.load(tmp_path / "policy" / "README.md")
    assert card.data.library_name == ("peft" if use_lora else "transformers")
    assert "ppo" in card.data.tags and "| steps | 1 |" in card.text
    assert f"use_lora: {str(use_lora).lower()}" in card.text
