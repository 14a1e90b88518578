import torch
from PIL import Image

from vittle_cli.model.builtin import IMAGE_SEQ_LENGTH, build_tiny_llava


def _chat(processor, question="Is there a red circle in the image?", answer="Yes"):
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    return processor.apply_chat_template(msgs)


def test_save_from_pretrained_forward_gives_finite_loss(tiny_llava):
    model, processor = tiny_llava
    text = _chat(processor)
    enc = processor(images=Image.new("RGB", (64, 64), (255, 0, 0)), text=text, return_tensors="pt")
    n_image = int((enc["input_ids"] == model.config.image_token_id).sum())
    assert n_image == IMAGE_SEQ_LENGTH
    # the system prompt comes first: the image sits in the middle of the sequence
    first_image = int((enc["input_ids"][0] == model.config.image_token_id).nonzero()[0])
    assert first_image > 5
    out = model(**enc, labels=enc["input_ids"])
    assert torch.isfinite(out.loss) and out.loss.item() > 0


def test_build_is_deterministic_from_seed():
    a, _ = build_tiny_llava(seed=3)
    b, _ = build_tiny_llava(seed=3)
    c, _ = build_tiny_llava(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_demo_variant_has_one_token_per_shapes_cell_and_a_2_layer_lm():
    """builtin:tiny-llava-demo: 32 px patches (a 2x2 grid of 32 px cells -> 4 visual tokens) and 2 LM layers,
    loaded back through from_pretrained like any model; unknown names list both built-ins."""
    import pytest
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from vittle_cli.errors import ModelError
    from vittle_cli.model.builtin import resolve_builtin_model

    folder = resolve_builtin_model("builtin:tiny-llava-demo")
    assert folder.name == "tiny-llava-demo-v2-seed0"
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype="float32")
    processor = AutoProcessor.from_pretrained(folder)
    assert model.config.text_config.num_hidden_layers == 2 and model.config.vision_config.patch_size == 32
    enc = processor(
        images=Image.new("RGB", (64, 64), (255, 0, 0)), text=_chat(processor), return_tensors="pt"
    )
    assert int((enc["input_ids"] == model.config.image_token_id).sum()) == 4
    assert torch.isfinite(model(**enc, labels=enc["input_ids"]).loss)
    with pytest.raises(ModelError, match="builtin:tiny-llava, builtin:tiny-llava-demo"):
        resolve_builtin_model("builtin:tiny-llama")
