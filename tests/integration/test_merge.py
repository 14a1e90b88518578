"""`vittle merge`: LoRA + bottleneck -> one standalone folder, checked numerically and by reloading."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vittle_cli.errors import UsageError

LM_TARGETS = ["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]


def _probe(processor):
    from vittle_cli.merge import _probe_inputs

    return _probe_inputs(processor)


def _build_lora_model(base_dir: Path, quantised: bool = False):
    """tiny LLaVA + bottleneck + LoRA (modules_to_save: bottleneck + projector), nothing a no-op."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, BitsAndBytesConfig, LlavaForConditionalGeneration

    from vittle_cli.model.attach import attach_bottleneck
    from vittle_cli.model.bottleneck import VittleConfig

    kwargs = {}
    if quantised:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.float32,
            llm_int8_skip_modules=["model.vision_tower", "model.multi_modal_projector", "lm_head"],
        )
    model = LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32, **kwargs)
    processor = AutoProcessor.from_pretrained(base_dir)
    bn = attach_bottleneck(model, VittleConfig(prior="L", layer_v=5, layer_t=6))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in bn.parameters():  # random, so that the bottleneck visibly changes the logits
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=LM_TARGETS,
        modules_to_save=["vittle_bottleneck", "model.multi_modal_projector"],
    )
    model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # LoRA B starts at zero: perturb it so the adapter does something
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
            elif ".modules_to_save.default." in name and "projector" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model.eval(), processor


def _save_adapter(model, processor, out: Path) -> Path:
    from vittle_cli.model.checkpoint import save_vittle

    model.save_pretrained(out)
    save_vittle(model, out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lora_adapter(tiny_model_dir, tmp_path_factory):
    """(adapter dir, reference eval logits of base + adapter + bottleneck, probe inputs)."""
    model, processor = _build_lora_model(tiny_model_dir)
    inputs = _probe(processor)
    with torch.no_grad():
        expected = model(**inputs, use_cache=False).logits.float()
        # guard: the adapter and the bottleneck each change the output, so the test can fail
        with model.disable_adapter():
            plain = model(**inputs, use_cache=False).logits.float()
    assert (expected - plain).abs().max() > 1e-2
    adapter = _save_adapter(model, processor, tmp_path_factory.mktemp("adapter") / "final")
    return adapter, expected, inputs


@pytest.mark.slow
def test_merge_matches_adapter_and_reloads(lora_adapter, tmp_path, tiny_model_dir):
    from safetensors import safe_open

    from vittle_cli.merge import run_merge
    from vittle_cli.model.attach import get_bottleneck
    from vittle_cli.model.checkpoint import load_vittle_model

    adapter, expected, inputs = lora_adapter
    out = tmp_path / "merged"
    result = run_merge(str(adapter), str(out), log=lambda *_: None)
    assert result.kind == "adapter" and not result.noop and result.has_bottleneck
    assert result.max_logit_diff is not None and result.max_logit_diff < 1e-4
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "vittle_config.json", "vittle_bottleneck.safetensors"} <= names
    assert "adapter_config.json" not in names and not any(n.startswith(".") for n in names)
    assert {"generation_config.json", "processor_config.json"} <= names or "chat_template.jinja" in names
    for shard in out.glob("model*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            keys = list(f.keys())
        assert keys and not [k for k in keys if "vittle_bottleneck" in k or "lora_" in k]

    model, _ = load_vittle_model(out)
    assert get_bottleneck(model) is not None and not type(model).__name__.startswith("Peft")
    with torch.no_grad():
        got = model(**inputs, use_cache=False).logits.float()
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.slow
def test_merged_folder_loads_in_fresh_process(lora_adapter, tmp_path):
    from vittle_cli.merge import run_merge

    adapter, expected, inputs = lora_adapter
    out = tmp_path / "merged"
    run_merge(str(adapter), str(out), log=lambda *_: None)
    torch.save({"inputs": dict(inputs), "expected": expected}, tmp_path / "probe.pt")
    script = textwrap.dedent(
        f"""
        import torch
        from transformers import LlavaForConditionalGeneration
        from vittle_cli.model.checkpoint import load_vittle_model
        from vittle_cli.model.attach import get_bottleneck
        probe = torch.load({str(tmp_path / "probe.pt")!r})
        model, _ = load_vittle_model({str(out)!r})
        assert get_bottleneck(model) is not None
        with torch.no_grad():
            got = model(**probe["inputs"], use_cache=False).logits
        print("VITTLE", float((got - probe["expected"]).abs().max()))
        plain = LlavaForConditionalGeneration.from_pretrained({str(out)!r}).eval()
        assert not hasattr(plain, "vittle_bottleneck")
        with torch.no_grad():
            base = plain(**probe["inputs"], use_cache=False).logits
        print("PLAIN", float((base - probe["expected"]).abs().max()))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = dict(line.split() for line in proc.stdout.splitlines() if line.startswith(("VITTLE", "PLAIN")))
    assert float(lines["VITTLE"]) < 1e-4
    assert float(lines["PLAIN"]) > 1e-3  # without the bottleneck the output differs: it is not in the weights


@pytest.mark.slow
def test_qlora_adapter_merges_into_unquantised_base(tiny_model_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    from vittle_cli.merge import run_merge
    from vittle_cli.model.attach import attach_bottleneck, get_bottleneck
    from vittle_cli.model.bottleneck import VittleConfig
    from vittle_cli.model.checkpoint import load_vittle_model, load_vittle_weights

    model, processor = _build_lora_model(tiny_model_dir, quantised=True)
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    run = tmp_path / "run"
    adapter = _save_adapter(model, processor, run / "final")
    (run / "config.yaml").write_text("model: {name: builtin:tiny-llava}\ntrain: {qlora: {enabled: true}}\n")
    del model

    result = run_merge(str(run), str(tmp_path / "merged"), log=lambda *_: None)
    assert result.kind == "adapter" and any("QLoRA" in n for n in result.notes)
    merged, _ = load_vittle_model(tmp_path / "merged")
    assert not any("4bit" in type(m).__name__ for m in merged.modules())
    assert "quantization_config" not in json.loads((tmp_path / "merged" / "config.json").read_text())

    # the expected model: float32 base + the same adapter + bottleneck, never quantised
    base = LlavaForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    attach_bottleneck(base, VittleConfig.read(adapter))
    ref = PeftModel.from_pretrained(base, str(adapter)).eval()
    load_vittle_weights(ref, adapter)
    inputs = _probe(processor)
    with torch.no_grad():
        want = ref(**inputs, use_cache=False).logits
        got = merged(**inputs, use_cache=False).logits
    assert get_bottleneck(merged) is not None
    assert (got - want).abs().max() < 1e-4


@pytest.mark.slow
def test_refuses_to_overwrite_then_overwrites_in_bf16(lora_adapter, tmp_path):
    from safetensors import safe_open

    from vittle_cli.merge import run_merge

    adapter, _, _ = lora_adapter
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="--overwrite"):
        run_merge(str(adapter), str(out), log=lambda *_: None)
    assert (out / "keep.txt").read_text() == "mine"
    result = run_merge(str(adapter), str(out), overwrite=True, dtype="bf16", log=lambda *_: None)
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()
    assert result.sample_output is not None
    with safe_open(str(next(out.glob("model*.safetensors"))), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.bfloat16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_already_merged_folder_is_a_noop(tiny_model_dir, tmp_path):
    from vittle_cli.merge import run_merge

    out = tmp_path / "never"
    result = run_merge(str(tiny_model_dir), str(out), log=lambda *_: None)
    assert result.noop and result.kind == "merged" and "nothing to merge" in result.notes[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing", "no such directory"),
        (lambda d: (d / "f.txt").write_text("x") and d / "f.txt", "is a file"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "not a model, adapter or run directory"),
        (lambda d: "builtin:tiny-llava", "merge needs a local run"),
        (
            lambda d: (
                (d / "run").mkdir() or (d / "run" / "config.yaml").write_text("model: {}\n") and d / "run"
            ),
            "has no final/",
        ),
    ],
)
def test_bad_sources(tmp_path, make, message):
    from vittle_cli.merge import run_merge

    with pytest.raises(UsageError, match=message):
        run_merge(str(make(tmp_path)), str(tmp_path / "out"), log=lambda *_: None)


_ZERO3_SCRIPT = """
import os, sys, torch, deepspeed
from transformers import AutoProcessor, LlavaForConditionalGeneration
from vittle_cli.model.attach import attach_bottleneck
from vittle_cli.model.bottleneck import VittleConfig
base, out, port = sys.argv[1], sys.argv[2], sys.argv[3]
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
deepspeed.init_distributed(dist_backend="gloo")
model = LlavaForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
bn = attach_bottleneck(model, VittleConfig(layer_v=5))
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    for p in model.parameters():  # every weight moves away from the base, the bottleneck's included
        p.add_(torch.randn(p.shape, generator=g) * 0.01)
torch.save(model.state_dict(), os.path.join(out, "..", "expected_state.pt"))
config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3},
          "zero_allow_untested_optimizer": True}
engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()), config=config)
engine.save_checkpoint(out, tag="global_step7")   # shards only: no model.safetensors
model.config.save_pretrained(out)
AutoProcessor.from_pretrained(base).save_pretrained(out)
open(os.path.join(out, "vittle_config.json"), "w").write(bn.config.to_json())
"""


@pytest.mark.slow
@pytest.mark.distributed
def test_zero3_checkpoint_is_consolidated(tiny_model_dir, tmp_path):
    pytest.importorskip("deepspeed")
    import socket

    from vittle_cli.merge import run_merge
    from vittle_cli.model.attach import get_bottleneck
    from vittle_cli.model.checkpoint import load_vittle_model

    ckpt = tmp_path / "run" / "checkpoint-7"
    ckpt.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    proc = subprocess.run(
        [sys.executable, "-c", _ZERO3_SCRIPT, str(tiny_model_dir), str(ckpt), port],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (ckpt / "global_step7").is_dir() and not list(ckpt.glob("model*.safetensors"))

    result = run_merge(str(ckpt), str(tmp_path / "merged"), log=lambda *_: None)
    assert result.kind == "zero" and result.has_bottleneck
    model, _ = load_vittle_model(tmp_path / "merged")
    assert get_bottleneck(model) is not None
    expected = torch.load(tmp_path / "run" / "expected_state.pt")
    got = model.state_dict()
    assert set(got) == set(expected)
    assert max(float((got[k] - expected[k]).abs().max()) for k in expected) < 1e-6
