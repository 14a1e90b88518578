"""attach/detach on real (tiny, random) HF models: token routing, cached generation, gradients, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vittle_cli.errors import ModelError
from vittle_cli.model.attach import (
    BOTTLENECK_ATTR,
    attach_bottleneck,
    attached_layers,
    detach_bottleneck,
    find_decoder_layers,
    get_bottleneck,
    image_token_ids,
)
from vittle_cli.model.bottleneck import VittleConfig
from vittle_cli.model.builtin import IMAGE_SEQ_LENGTH
from vittle_cli.model.loss import vittle_loss

D = 96  # builtin:tiny-llava hidden size


def _image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.RandomState(seed).randint(0, 255, (48, 48, 3), dtype=np.uint8))


def _chat(processor, question: str, answer: str | None, image: bool) -> str:
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": question}]
    messages = [{"role": "user", "content": content}]
    if answer is None:
        return processor.apply_chat_template(messages, add_generation_prompt=True)
    messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return processor.apply_chat_template(messages)


def _prompt(processor, question: str = "Is there a red circle?"):
    return processor(images=[_image()], text=[_chat(processor, question, None, True)], return_tensors="pt")


def _mixed_train_batch(processor):
    """Row 0 text only (left-padded), row 1 with an image; the last 3 real tokens of each row are targets."""
    texts = [
        _chat(processor, "Name a colour.", "red", image=False),
        _chat(processor, "Is there a red circle?", "Yes", image=True),
    ]
    batch = processor(images=[_image(1)], text=texts, padding=True, return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -3:] = batch["input_ids"][:, -3:]
    batch["labels"] = labels
    return batch


def _image_positions(model, input_ids):
    return input_ids == model.config.image_token_id


def _set_known_map(bottleneck, visual_value: float, text_value: float):
    """Make mu a constant per modality: the last Linear outputs only its bias."""
    with torch.no_grad():
        for net, value in ((bottleneck.visual_net, visual_value), (bottleneck.text_net, text_value)):
            net[2].weight.zero_()
            net[2].bias.zero_()
            net[2].bias[:D] = value


# ---- routing -----------------------------------------------------------------------------------------------


def test_image_in_the_middle_goes_through_the_visual_net_only(tiny_llava):
    model, processor = tiny_llava
    inputs = _prompt(processor)
    image = _image_positions(model, inputs["input_ids"])[0]
    first, last = image.nonzero()[0].item(), image.nonzero()[-1].item()
    assert (
        first > 5 and last < image.numel() - 3 and int(image.sum()) == IMAGE_SEQ_LENGTH
    )  # after the system prompt
    bn = attach_bottleneck(model, VittleConfig())
    _set_known_map(bn, visual_value=1.0, text_value=-1.0)
    seen = {}
    bn.register_forward_hook(lambda m, args, out: seen.update(hidden=args[0], out=out))
    with torch.no_grad():
        model(**inputs)
    # eval: h' = 0.5 h + 0.5 mu, mu = +1 on visual rows and -1 on text rows.
    shift = (seen["out"] - 0.5 * seen["hidden"])[0]
    torch.testing.assert_close(shift[image], torch.full((IMAGE_SEQ_LENGTH, D), 0.5))
    torch.testing.assert_close(shift[~image], torch.full((int((~image).sum()), D), -0.5))


def test_nets_get_exactly_their_rows_in_train_mode(tiny_llava):
    model, processor = tiny_llava
    inputs = _prompt(processor)
    image = _image_positions(model, inputs["input_ids"])
    bn = attach_bottleneck(model.train(), VittleConfig())
    rows = {}
    layer_out = {}
    bn.visual_net.register_forward_pre_hook(lambda m, a: rows.update(visual=a[0]))
    bn.text_net.register_forward_pre_hook(lambda m, a: rows.update(text=a[0]))
    bn.register_forward_pre_hook(lambda m, a: layer_out.update(hidden=a[0]))
    model(**inputs)
    assert torch.equal(rows["visual"], layer_out["hidden"][image])
    assert torch.equal(rows["text"], layer_out["hidden"][~image])
    assert torch.equal(bn.last_visual_mask, image)
    assert (bn.last_kl_v[~image] == 0).all() and (bn.last_kl_v[image] > 0).all()
    assert (bn.last_kl_t[image] == 0).all() and (bn.last_kl_t[~image] > 0).all()


def test_visual_and_text_layers_can_differ(tiny_llava):
    model, processor = tiny_llava
    bn = attach_bottleneck(model, VittleConfig(layer_v=2, layer_t=-3))
    assert attached_layers(model) == (2, 5)
    events = []
    layers = find_decoder_layers(model)
    for i in (2, 5):
        layers[i].register_forward_hook(lambda m, a, o, i=i: events.append(f"layer{i}"))
    bn.visual_net.register_forward_pre_hook(lambda m, a: events.append(f"visual{a[0].shape[0]}"))
    bn.text_net.register_forward_pre_hook(lambda m, a: events.append(f"text{a[0].shape[0]}"))
    inputs = _prompt(processor)
    with torch.no_grad():
        model(**inputs)
    n_text = inputs["input_ids"].numel() - IMAGE_SEQ_LENGTH
    assert events == [f"visual{IMAGE_SEQ_LENGTH}", "layer2", f"text{n_text}", "layer5"]


def test_output_hidden_states_record_the_post_bottleneck_state(tiny_llava):
    model, processor = tiny_llava
    bn = attach_bottleneck(model, VittleConfig())
    seen = {}
    bn.register_forward_hook(lambda m, a, out: seen.update(out=out))
    with torch.no_grad():
        out = model(**_prompt(processor), output_hidden_states=True)
    layer = attached_layers(model)[0]
    assert torch.equal(out.hidden_states[layer + 1], seen["out"])


# ---- modes, generation, detach -----------------------------------------------------------------------------


def test_eval_is_deterministic_and_train_samples(tiny_llava):
    model, processor = tiny_llava
    inputs = _prompt(processor)
    bn = attach_bottleneck(model, VittleConfig())
    assert not bn.training
    with torch.no_grad():
        a, b = model(**inputs).logits, model(**inputs).logits
        assert torch.equal(a, b)
        model.train()
        bn.alpha = 0.5
        assert bn.training
        assert not torch.equal(model(**inputs).logits, model(**inputs).logits)


def test_cached_generation_equals_uncached(tiny_llava):
    model, processor = tiny_llava
    texts = [
        _chat(processor, "Is there a red circle?", None, True),
        _chat(processor, "Describe it.", None, True),
    ]
    inputs = processor(images=[_image(0), _image(1)], text=texts, padding=True, return_tensors="pt")
    assert (inputs["attention_mask"] == 0).any()  # left padding is part of the test
    with torch.no_grad():
        plain = model(**inputs).logits
    attach_bottleneck(model, VittleConfig())
    kwargs = dict(max_new_tokens=4, do_sample=False, return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        assert not torch.allclose(model(**inputs).logits, plain, atol=1e-3)  # the bottleneck does act
        cached = model.generate(**inputs, **kwargs)
        uncached = model.generate(**inputs, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    for step_cached, step_full in zip(cached.logits, uncached.logits, strict=True):
        torch.testing.assert_close(step_cached, step_full, atol=1e-5, rtol=1e-5)


def test_cached_step_logits_equal_full_forward(tiny_llava):
    model, processor = tiny_llava
    inputs = _prompt(processor)
    attach_bottleneck(model, VittleConfig(prior="L"))
    next_ids = torch.tensor([[7, 11, 13]])
    with torch.no_grad():
        prefill = model(**inputs, use_cache=True)
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(next_ids)], dim=1)
        step = model(input_ids=next_ids, attention_mask=mask, past_key_values=prefill.past_key_values)
        full_ids = torch.cat([inputs["input_ids"], next_ids], dim=1)
        full = model(input_ids=full_ids, attention_mask=mask, pixel_values=inputs["pixel_values"])
    torch.testing.assert_close(step.logits, full.logits[:, -3:], atol=1e-5, rtol=1e-5)


def test_detach_restores_the_original_model_exactly(tiny_llava):
    model, processor = tiny_llava
    inputs = _prompt(processor)
    keys = set(model.state_dict())
    with torch.no_grad():
        before = model(**inputs).logits
        # Snapshot after a first forward: transformers installs its own output-capture hooks lazily.
        hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
        attach_bottleneck(model, VittleConfig())
        assert any(k.startswith(f"{BOTTLENECK_ATTR}.") for k in model.state_dict())
        assert not torch.equal(model(**inputs).logits, before)
        detach_bottleneck(model)
        after = model(**inputs).logits
    assert torch.equal(after, before)
    assert set(model.state_dict()) == keys and get_bottleneck(model) is None
    assert [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()] == hooks
    attach_bottleneck(model, VittleConfig())  # and it can be attached again


def test_attach_takes_dtype_and_train_flag_of_the_model(tiny_llava):
    model, _ = tiny_llava
    bn = attach_bottleneck(model.to(torch.bfloat16).train(), VittleConfig(prior="L"))
    assert bn.training and bn.config.hidden_size == D
    assert {p.dtype for p in bn.parameters()} == {torch.bfloat16}
    assert get_bottleneck(model) is bn and image_token_ids(model) == [model.config.image_token_id]


# ---- training ------------------------------------------------------------------------------------------------


def _loss_and_grads(model, batch, seed):
    torch.manual_seed(seed)
    out = model(**batch)
    bn = get_bottleneck(model)
    parts = vittle_loss(out.loss, bn, batch["labels"], batch["attention_mask"])
    parts.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return parts, grads


def test_mixed_batch_trains_and_gradient_checkpointing_gives_equal_gradients(tiny_llava):
    model, processor = tiny_llava
    batch = _mixed_train_batch(processor)
    model.train()
    bn = attach_bottleneck(model, VittleConfig(prior="L"))
    bn.alpha = 0.5
    parts, plain = _loss_and_grads(model, batch, seed=3)
    image = _image_positions(model, batch["input_ids"])
    assert not image[0].any() and image[1].sum() == IMAGE_SEQ_LENGTH
    torch.testing.assert_close(parts.kl_v, bn.last_kl_v[image].mean())
    assert torch.isfinite(parts.loss) and parts.kl_v > 0 and parts.kl_t > 0
    for name, _ in bn.named_parameters():  # both nets and both priors learn
        grad = plain[f"{BOTTLENECK_ATTR}.{name}"]
        assert grad.abs().sum() > 0, name
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _, checkpointed = _loss_and_grads(model, batch, seed=3)
    assert set(checkpointed) == set(plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-5, rtol=1e-5, msg=name)


def test_text_only_batch_has_zero_kl_v(tiny_llava):
    model, processor = tiny_llava
    texts = [
        _chat(processor, "Name a colour.", "red", False),
        _chat(processor, "Count to three.", "one", False),
    ]
    batch = processor(text=texts, padding=True, return_tensors="pt")
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    bn = attach_bottleneck(model.train(), VittleConfig())
    bn.alpha = 0.5
    parts, grads = _loss_and_grads(model, batch, seed=0)
    assert parts.kl_v.item() == 0.0 and torch.isfinite(parts.loss)
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_inputs_embeds_without_images_is_text_and_with_images_an_error(tiny_llava):
    model, processor = tiny_llava
    attach_bottleneck(model, VittleConfig())
    ids = processor(text=["Name a colour."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        by_ids = model(input_ids=ids).logits
        by_embeds = model(inputs_embeds=model.get_input_embeddings()(ids)).logits
        torch.testing.assert_close(by_embeds, by_ids)
        inputs = _prompt(processor)
        embeds = model.get_input_embeddings()(inputs["input_ids"].clamp(max=10))
        with pytest.raises(ModelError, match="input_ids"):
            model(inputs_embeds=embeds, pixel_values=inputs["pixel_values"])


# ---- errors ---------------------------------------------------------------------------------------------------


def test_attach_errors(tiny_llava):
    model, _ = tiny_llava
    with pytest.raises(ModelError, match=r"0\.\.7"):
        attach_bottleneck(model, VittleConfig(layer_v=8))
    with pytest.raises(ModelError, match="no Vittle bottleneck"):
        detach_bottleneck(model)
    attach_bottleneck(model, VittleConfig())
    with pytest.raises(ModelError, match="already attached"):
        attach_bottleneck(model, VittleConfig())
    with pytest.raises(ModelError, match="outside the multimodal"):
        model.model.language_model(input_ids=torch.tensor([[1, 2, 3]]))


def test_model_without_image_token_id_is_refused(tiny_llava):
    model, _ = tiny_llava
    model.config.image_token_id = None
    with pytest.raises(ModelError, match="image token id"):
        attach_bottleneck(model, VittleConfig())
    assert get_bottleneck(model) is None


def test_unknown_architecture_names_the_supported_families():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    with pytest.raises(ModelError, match="Qwen2-VL"):
        attach_bottleneck(LlamaForCausalLM(config), VittleConfig())


# ---- a second family: Qwen2-VL ---------------------------------------------------------------------------------

QWEN_IMAGE, QWEN_VIDEO, QWEN_START, QWEN_END = 120, 121, 122, 123


def _tiny_qwen2_vl():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    text = dict(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    )
    vision = dict(
        depth=1, embed_dim=32, hidden_size=64, num_heads=2, patch_size=4, spatial_merge_size=2, mlp_ratio=2
    )
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=QWEN_IMAGE,
        video_token_id=QWEN_VIDEO,
        vision_start_token_id=QWEN_START,
        vision_end_token_id=QWEN_END,
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config).eval()
    # A 16x16 image in 4x4 patches (temporal patch 2): 16 patches, merged 2x2 into 4 image tokens,
    # placed after a short "system prompt".
    ids = torch.tensor([[1, 5, 6, 7, QWEN_START] + [QWEN_IMAGE] * 4 + [QWEN_END, 8, 9, 10, 11]])
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(16, 3 * 2 * 4 * 4),
        "image_grid_thw": torch.tensor([[1, 4, 4]]),
        "mm_token_type_ids": (ids == QWEN_IMAGE).int(),  # transformers >= 5.2x wants it for M-RoPE
    }
    return model, inputs


def test_qwen2_vl_routing_and_cached_generation():
    model, inputs = _tiny_qwen2_vl()
    assert image_token_ids(model) == [QWEN_IMAGE, QWEN_VIDEO]
    bn = attach_bottleneck(model, VittleConfig())
    assert attached_layers(model) == (3, 3) and bn.config.hidden_size == 64
    with torch.no_grad():
        for net, value in ((bn.visual_net, 1.0), (bn.text_net, -1.0)):
            net[2].weight.zero_()
            net[2].bias.zero_()
            net[2].bias[:64] = value
    seen = {}
    bn.register_forward_hook(lambda m, args, out: seen.update(hidden=args[0], out=out))
    with torch.no_grad():
        model(**inputs)
    image = (inputs["input_ids"] == QWEN_IMAGE)[0]
    shift = (seen["out"] - 0.5 * seen["hidden"])[0]
    torch.testing.assert_close(shift[image], torch.full((4, 64), 0.5))
    torch.testing.assert_close(shift[~image], torch.full((10, 64), -0.5))

    torch.manual_seed(1)
    for p in bn.parameters():  # back to a non-trivial bottleneck before comparing generations
        torch.nn.init.normal_(p, std=0.2)
    kwargs = dict(max_new_tokens=5, do_sample=False, return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        cached = model.generate(**inputs, **kwargs)
        uncached = model.generate(**inputs, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    for step_cached, step_full in zip(cached.logits, uncached.logits, strict=True):
        torch.testing.assert_close(step_cached, step_full, atol=1e-5, rtol=1e-5)


def test_tuple_layer_outputs_of_transformers_4_are_handled(tiny_llava):
    model, processor = tiny_llava
    inputs = _prompt(processor)
    attach_bottleneck(model, VittleConfig())
    with torch.no_grad():
        expected = model(**inputs).logits
    layer = find_decoder_layers(model)[attached_layers(model)[0]]
    tensor_forward = layer.forward
    seen = {}
    # Make the layer return a 4.x-style tuple; a later hook turns it back into what 5.x's loop expects.
    layer.forward = lambda *a, **k: (tensor_forward(*a, **k), "extra")
    layer.register_forward_hook(lambda m, a, out: seen.update(out=out) or out[0])
    with torch.no_grad():
        got = model(**inputs).logits
    assert isinstance(seen["out"], tuple) and seen["out"][1] == "extra"
    assert torch.equal(got, expected)


def test_a_detached_bottleneck_can_be_reattached_and_a_mismatched_one_is_refused(tiny_llava):
    model, processor = tiny_llava
    inputs = _prompt(processor)
    bn = attach_bottleneck(model.eval(), VittleConfig(alpha_end=0.5))
    with torch.no_grad():
        first = model(**inputs).logits
        detach_bottleneck(model)
        assert attach_bottleneck(model, VittleConfig(alpha_end=0.5), existing=bn) is bn
        assert torch.equal(model(**inputs).logits, first)  # same module, same weights, same output
    detach_bottleneck(model)
    with pytest.raises(ModelError, match="re-attach"):
        attach_bottleneck(model, VittleConfig(alpha_end=0.5, layer_v=1), existing=bn)
