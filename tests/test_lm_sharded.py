"""Sharded engines through accelerate, 2 CPU processes each: FSDP2 (forced onto gloo, see
lm_sharded_script.py) and, when deepspeed is installed, DeepSpeed ZeRO-2 and ZeRO-3 on its CPU
accelerator. Each run makes the same update as one process on the same global batch, decodes
with processes stopping at different lengths, and resumes exactly from a sharded checkpoint.

The DeepSpeed tests skip when deepspeed is not importable (it is the optional extra
``rlhf-pg[deepspeed]``); set RLHF_PG_REQUIRE_DEEPSPEED=1 to make its absence a failure, as a
CI job that claims to test DeepSpeed must.
"""

import importlib.util
import json
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from lm_fixtures import make_policy, make_tokenizer
from safetensors.torch import load_file

from rlhf_pg.lm import PPOConfig, PPOTrainer
from rlhf_pg.lm.engines import (
    EngineError,
    check_engine,
    check_hf_trainer_launcher,
    configure_engine,
    refuse_sharded_weights,
)

SCRIPT = Path(__file__).parent / "lm_sharded_script.py"
ROOT = Path(__file__).parent.parent
ACCELERATE = Path(sys.executable).parent / "accelerate"
CONFIGS = ROOT / "recipes" / "accelerate"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Variants: LORA=1 trains adapters on c_attn, CRITIC=1 adds a separate critic model; PAD=1
# gives the tokenizer a pad token, so the trainer does not grow the embeddings (under ZeRO-3,
# transformers grows them inside deepspeed.zero.Init, which draws other random numbers: the
# LoRA init and the critic's new pad row would differ from one plain process)
VARIANTS = {
    "full": {},
    "lora-critic": {"LORA": "1", "CRITIC": "1"},
    "lora-critic-pad": {"LORA": "1", "CRITIC": "1", "PAD": "1"},
}


def _run(cmd: list[str], out: Path, variant: str = "full") -> tuple[dict, dict]:
    out.mkdir()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "DS_ACCELERATOR": "cpu",
        **VARIANTS[variant],
    }
    proc = subprocess.run(
        cmd + [str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=150
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return load_file(out / "first.safetensors"), json.loads((out / "metrics.json").read_text())


def _launch(config: str, engine: str, out: Path, variant: str = "full") -> tuple[dict, dict]:
    return _run(
        [
            str(ACCELERATE), "launch", "--config_file", str(CONFIGS / config),
            "--num_processes", "2", "--mixed_precision", "no",
            "--main_process_port", str(_free_port()), str(SCRIPT), engine,
        ],
        out,
        variant,
    )  # fmt: skip


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference of each variant: the same two fixed steps in one plain process."""
    done = {}

    def get(variant: str = "full"):
        if variant not in done:
            out = tmp_path_factory.mktemp("ref") / variant
            done[variant] = _run([sys.executable, str(SCRIPT), "none"], out, variant)
        return done[variant]

    return get


def _check_against_one_process(got, metrics, one_process, variant: str = "full") -> None:
    ref_w, ref_m = one_process(variant)
    assert set(got) == set(ref_w)
    for name in ref_w:  # the full weights after two steps (linear LR decay, clipping active)
        torch.testing.assert_close(got[name], ref_w[name], atol=2e-5, rtol=1e-4, msg=name)
    for step, (mine, ref) in enumerate(zip(metrics["fixed"], ref_m["fixed"])):
        for key in ("loss/policy", "loss/value", "grad_norm", "kl/seq", "lr"):
            assert mine[key] == pytest.approx(ref[key], abs=2e-5), (step, key)
    if variant == "full":  # max_grad_norm=1 clipped: clipping is tested
        assert ref_m["fixed"][0]["grad_norm"] > 1.0
    assert metrics["num_processes"] == 2
    assert len(metrics["first_completions"]) == 2  # decoding came first, and worked
    # rank 0 stopped after one token, rank 1 decoded max_new_tokens: no per-token collectives
    assert metrics["decoded_widths"] == [1, 6]
    assert metrics["resumed_step"] == 3 and metrics["resumed_same_weights"]
    assert metrics["resumed_same_update"]  # optimizer state and schedule came back too
    assert metrics["policy_dir_same_weights"]  # policy/ = gathered full weights
    assert "accelerate_state" in metrics["checkpoint_files"]
    assert "trainable.safetensors" not in metrics["checkpoint_files"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["full", "lora-critic"])
def test_fsdp2_on_two_cpu_processes_matches_one_process(tmp_path, one_process, variant):
    got, metrics = _launch("fsdp2.yaml", "fsdp2", tmp_path / "fsdp2", variant)
    assert metrics["engine"] == "fsdp"
    assert metrics["dtensor_params"] and metrics["dtensor_reference"]  # sharded, not DDP
    _check_against_one_process(got, metrics, one_process, variant)


def _need_deepspeed() -> None:
    if importlib.util.find_spec("deepspeed") is None:
        if os.environ.get("RLHF_PG_REQUIRE_DEEPSPEED") == "1":
            pytest.fail("RLHF_PG_REQUIRE_DEEPSPEED=1 but deepspeed is not installed")
        pytest.skip("deepspeed not installed (pip install 'rlhf-pg[deepspeed]')")


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "variant"), [(2, "full"), (3, "full"), (3, "lora-critic-pad")])
def test_deepspeed_zero_on_two_cpu_processes_matches_one_process(
    tmp_path, one_process, stage, variant
):
    _need_deepspeed()
    config, engine = f"deepspeed_zero{stage}.yaml", f"zero{stage}"
    got, metrics = _launch(config, engine, tmp_path / "ds", variant)
    assert metrics["engine"] == "deepspeed" and metrics["wrapper"] == "DeepSpeedEngine"
    assert metrics["zero_stage"] == stage
    assert metrics["partitioned_params"] == (stage == 3)
    if variant == "full":  # with LoRA the reference is the policy with its adapters disabled
        # sharded under ZeRO-3, a stage-0 engine (the policy's precision) otherwise
        assert metrics["reference_wrapper"] == "DeepSpeedEngine"
        assert metrics["reference_zero_stage"] == (3 if stage == 3 else 0)
    _check_against_one_process(got, metrics, one_process, variant)


def test_fsdp_requested_on_cpu_is_refused_not_run_as_ddp(monkeypatch):
    """accelerate drops FSDP with cpu=True (it runs DDP); the trainer says so instead."""
    accelerator = Accelerator(cpu=True)
    with pytest.raises(EngineError, match="asked for fsdp but accelerate set up"):
        check_engine(accelerator, env={"ACCELERATE_USE_FSDP": "true"})
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    tok = make_tokenizer()
    with pytest.raises(EngineError, match="applies FSDP only to GPU processes"):
        PPOTrainer(PPOConfig(use_cpu=True, progress_bar=False), make_policy(tok), tok)


def test_ppo_recipe_refuses_fsdp_on_cpu_before_loading_models(stage_outputs, monkeypatch, capsys):
    import rlhf_pg.stages.ppo

    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded although the engine cannot run")

    monkeypatch.setattr(rlhf_pg.stages.ppo, "load_policy", boom)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` of fsdp2.yaml sets
    main = runpy.run_path(str(ROOT / "recipes" / "ppo.py"))["main"]
    config = ROOT / "recipes" / "configs" / "ppo_sentiment.yaml"
    assert main(["--config", str(config), "--use_cpu", "true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the launcher asked for FSDP"), err


def _deepspeed_accelerator(config: dict, processes: int = 2):
    """The fields of a DeepSpeed accelerator that configure_engine reads and writes."""
    plugin = SimpleNamespace(
        deepspeed_config=config, zero_stage=config["zero_optimization"]["stage"]
    )
    return SimpleNamespace(
        distributed_type=DistributedType.DEEPSPEED,
        gradient_accumulation_steps=1,
        num_processes=processes,
        state=SimpleNamespace(deepspeed_plugin=plugin),
    )


def test_deepspeed_config_takes_the_run_settings_and_refuses_other_ones():
    auto = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": {"stage": 3},
    }
    acc = _deepspeed_accelerator(json.loads(json.dumps(auto)))
    configure_engine(acc, micro_batch_size=4, gradient_accumulation_steps=2, max_grad_norm=0.5)
    config = acc.state.deepspeed_plugin.deepspeed_config
    assert config["train_micro_batch_size_per_gpu"] == 4  # prepare() has no dataloader
    assert config["train_batch_size"] == 4 * 2 * 2
    assert config["gradient_accumulation_steps"] == 2 == acc.gradient_accumulation_steps
    assert config["gradient_clipping"] == 0.5  # max_grad_norm, not accelerate's default 1.0
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    for key, value, ours in (
        ("gradient_clipping", 1.0, "max_grad_norm=0.5"),
        ("gradient_accumulation_steps", 4, "gradient_accumulation_steps=2"),
        ("train_micro_batch_size_per_gpu", 8, "micro-batch size"),
    ):
        acc = _deepspeed_accelerator({**json.loads(json.dumps(auto)), key: value})
        with pytest.raises(EngineError, match=f"sets {key}={value} but the run has .*{ours}"):
            configure_engine(
                acc, micro_batch_size=4, gradient_accumulation_steps=2, max_grad_norm=0.5
            )


@pytest.mark.slow
def test_ppo_recipe_under_deepspeed_zero3_with_a_qwen2_model(tmp_path):
    """recipes/ppo.py end to end on 2 CPU processes under ZeRO-3 with a chat-templated Qwen2
    model: evaluations (full weights gathered on every process), sharded checkpoints and the
    gathered policy saved at the end."""
    _need_deepspeed()
    from model_families import save_family
    from transformers import AutoModelForCausalLM

    model = save_family("qwen2", tmp_path / "qwen2")
    data = tmp_path / "data"
    data.mkdir()
    for split, questions in (("train", ["twelve plus seven", "i loved the music"] * 2),
                             ("test", ["the movie was great"])):  # fmt: skip
        rows = [{"prompt": [{"role": "user", "content": q}]} for q in questions]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "reward.py").write_text(
        "def length(prompts, completions, **kw):\n"
        "    return [len(c[0]['content']) / 10 for c in completions]\n"
    )
    out = tmp_path / "run"
    args = [
        "--task", "dataset", "--model_name_or_path", str(model), "--dataset_name", str(data),
        "--dataset_test_split", "test", "--reward_fn", f"{tmp_path}/reward.py:length",
        "--estimator", "ppo", "--batch_size", "2", "--max_steps", "2", "--eval_every", "1",
        "--eval_samples", "1", "--max_new_tokens", "4", "--save_every", "1", "--use_cpu", "true",
        "--progress_bar", "false", "--output_dir", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run(
        [
            str(ACCELERATE), "launch", "--config_file", str(CONFIGS / "deepspeed_zero3.yaml"),
            "--num_processes", "2", "--mixed_precision", "no",
            "--main_process_port", str(_free_port()), str(ROOT / "recipes" / "ppo.py"), *args,
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "ppo_results.json").read_text())
    assert [h["step"] for h in results["history"]] == [1, 2]
    assert [e["step"] for e in results["evals"]] == [0, 1, 2]
    assert results["evals"][0]["kl_seq"] == 0.0  # the sharded reference equals the policy
    assert (out / "checkpoint-000002" / "accelerate_state").is_dir()
    saved = AutoModelForCausalLM.from_pretrained(out / "policy")
    start = AutoModelForCausalLM.from_pretrained(model)
    assert sum(p.numel() for p in saved.parameters()) == sum(
        p.numel() for p in start.parameters()
    )  # full weights, not ZeRO-3 partitions
    assert any(not torch.equal(a, b) for a, b in zip(saved.parameters(), start.parameters()))


def test_stages_on_transformers_trainer_refuse_what_it_cannot_run():
    """TRL's SFTTrainer / RewardTrainer build no DeepSpeed engine on CPU (first backward
    fails); the reward-model stage loads and scores whole models on the main process, which
    ZeRO-3 and FSDP would partition or leave waiting. Both are refused up front."""
    ds = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}
    with pytest.raises(EngineError, match="does not run DeepSpeed on CPU processes"):
        check_hf_trainer_launcher("the SFT stage", cpu=True, env=ds)
    check_hf_trainer_launcher("the SFT stage", cpu=False, env={})  # nothing asked: fine
    refuse_sharded_weights("the reward-model stage", env=ds)  # ZeRO-2 keeps whole weights
    for env, name in (
        ({**ds, "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "DeepSpeed ZeRO-3"),
        ({"ACCELERATE_USE_FSDP": "true"}, "FSDP"),
    ):
        with pytest.raises(EngineError, match=f"does not support {name}"):
            refuse_sharded_weights("the reward-model stage", env=env)
