"""The bottleneck under peft LoRA (trained beside the adapter via modules_to_save) and under DeepSpeed
ZeRO-3 (partitioned, gathered on use and on save). Real optimizer steps on CPU, no mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from vittle_cli.model.attach import attach_bottleneck, get_bottleneck
from vittle_cli.model.bottleneck import VittleBottleneck, VittleConfig
from vittle_cli.model.checkpoint import load_vittle_model, save_vittle
from vittle_cli.model.loss import vittle_loss


def _mixed_batch(processor):
    """Row 0 text only, row 1 with an image; the last 3 real tokens of each row are the targets."""
    image = Image.fromarray(np.random.RandomState(0).randint(0, 255, (48, 48, 3), dtype=np.uint8))

    def chat(question, answer, with_image):
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
        return processor.apply_chat_template(
            [
                {"role": "user", "content": content},
                {"role": "assistant", "content": [{"type": "text", "text": answer}]},
            ]
        )

    texts = [chat("Name a colour.", "red", False), chat("Is there a red circle?", "Yes", True)]
    batch = processor(images=[image], text=texts, padding=True, return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -3:] = batch["input_ids"][:, -3:]
    batch["labels"] = labels
    return batch


def test_lora_trains_the_bottleneck_beside_the_adapter_and_reloads(tiny_llava, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, processor = tiny_llava
    attach_bottleneck(model, VittleConfig(prior="L"))
    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=r".*language_model.*\.(q_proj|v_proj)",
        modules_to_save=["vittle_bottleneck"],
    )
    peft_model = get_peft_model(model, lora)
    bn = get_bottleneck(peft_model)
    assert (
        isinstance(bn, VittleBottleneck)
        and bn is peft_model.base_model.model.vittle_bottleneck.modules_to_save["default"]
    )
    assert all(p.requires_grad for p in bn.parameters())  # fully trained, not LoRA'd
    start = {k: v.clone() for k, v in bn.state_dict().items()}
    lora_b = {n: p for n, p in peft_model.named_parameters() if "lora_B" in n}
    assert lora_b and all(torch.equal(p, torch.zeros_like(p)) for p in lora_b.values())

    batch = _mixed_batch(processor)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    bn.alpha = 0.5
    for _ in range(3):
        out = peft_model(**batch)
        parts = vittle_loss(out.loss, get_bottleneck(peft_model), batch["labels"], batch["attention_mask"])
        assert torch.isfinite(parts.loss) and parts.kl_v > 0 and parts.kl_t > 0
        parts.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, value in bn.state_dict().items():
        assert not torch.equal(value, start[name]), f"bottleneck {name} did not train"
    assert all(p.abs().sum() > 0 for p in lora_b.values())

    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    save_vittle(peft_model, adapter)
    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(**batch).logits
    loaded, _ = load_vittle_model(adapter)  # base from the adapter's base_model_name_or_path
    assert get_bottleneck(loaded) is not None and not get_bottleneck(loaded).training
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, expected, atol=1e-6, rtol=1e-6)


_ZERO3_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch, deepspeed
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus
    from vittle_cli.model.attach import attach_bottleneck, get_bottleneck
    from vittle_cli.model.bottleneck import VittleConfig
    from vittle_cli.model.checkpoint import save_vittle
    from vittle_cli.model.loss import vittle_loss
    sys.path.insert(0, sys.argv[3])
    from test_bottleneck_peft_zero3 import _mixed_batch

    model_dir, out_dir = sys.argv[1], sys.argv[2]
    deepspeed.init_distributed(dist_backend="gloo")
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype="float32")
    processor = AutoProcessor.from_pretrained(model_dir)
    bn = attach_bottleneck(model, VittleConfig(prior="L"))
    start = {k: v.clone() for k, v in bn.state_dict().items()}
    model.train()
    config = {
        "train_micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    }
    # torch AdamW passed in: an "optimizer" block would JIT-build DeepSpeed's CPU Adam (~35 s).
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    params = list(get_bottleneck(engine).parameters())
    partitioned = all(hasattr(p, "ds_id") and p.ds_status == ZeroParamStatus.NOT_AVAILABLE for p in params)
    batch = _mixed_batch(processor)
    text_only = {k: v[:1] for k, v in batch.items() if k != "pixel_values"}
    losses, kls = [], []
    for step in range(3):
        b = text_only if step == 1 else batch  # a text-only step must not break ZeRO-3
        get_bottleneck(engine).alpha = 0.5
        out = engine(**b)
        parts = vittle_loss(out.loss, get_bottleneck(engine), b["labels"], b["attention_mask"])
        engine.backward(parts.loss)
        engine.step()
        losses.append(parts.loss.item())
        kls.append([parts.kl_v.item(), parts.kl_t.item()])
    save_vittle(engine, out_dir)
    print("RESULT " + json.dumps({
        "partitioned": partitioned,
        "losses": losses,
        "kls": kls,
        "start": {k: v.tolist() for k, v in start.items()},
    }))
    """
)


@pytest.mark.distributed
@pytest.mark.slow
def test_zero3_partitions_trains_and_saves_complete_weights(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "zero3_run.py"
    script.write_text(_ZERO3_SCRIPT)
    env = dict(
        os.environ,
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(29500 + os.getpid() % 1000),
    )
    here = os.path.dirname(__file__)
    proc = subprocess.run(
        [sys.executable, str(script), str(tiny_model_dir), str(tmp_path / "out"), here],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["partitioned"]
    assert all(np.isfinite(result["losses"]))
    assert result["kls"][0][0] > 0 and result["kls"][1][0] == 0.0  # the text-only step has no KL_v

    saved = load_file(str(tmp_path / "out" / "vittle_bottleneck.safetensors"))
    d = 96
    assert saved["visual_net.0.weight"].shape == (d, d) and saved["text_net.2.weight"].shape == (2 * d, d)
    assert saved["visual_prior_mu"].shape == (d,)
    assert set(saved) == set(result["start"])
    for name, start in result["start"].items():
        assert not torch.equal(saved[name], torch.tensor(start)), (
            f"{name} did not train (or was not gathered)"
        )
    config = VittleConfig.read(tmp_path / "out")
    assert config.prior == "L" and config.hidden_size == d
