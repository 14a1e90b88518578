"""The activation formulas against what autograd really keeps: the bytes of the tensors saved for backward
(counted once per storage, parameters excluded) during a bf16 training forward on CPU."""

from __future__ import annotations

import pytest
import torch

from vittle_cli.train.memory import PlanSettings, activation_rows, lora_params
from vittle_cli.train.model_shapes import ModelShapes, TextShapes, VisionShapes

D, MLP, V, T, B = 256, 688, 500, 128, 2  # hidden, MLP width, vocabulary, tokens, batch


def saved_bytes(run) -> int:
    """Bytes of the non-parameter tensors autograd saves while `run()` executes."""
    storages: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        params = run()
    skip = {p.untyped_storage().data_ptr() for p in params}
    return sum(n for ptr, n in storages.items() if ptr not in skip)


def llama_saved_per_token(layers: int, checkpointing: bool, lora: bool = False) -> float:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=D, intermediate_size=MLP, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=4, vocab_size=V, attn_implementation="sdpa")  # fmt: skip
    model = LlamaForCausalLM(config).to(torch.bfloat16).train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora:  # as vittle applies it: every decoder linear, dropout, float32 adapters, under bf16 autocast
        from peft import LoraConfig, get_peft_model

        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        # No dropout here: on CPU its mask is a float32 tensor, where CUDA keeps a bool (the plan counts CUDA's
        # 3 bytes per input element; test_activation_rows_by_hand checks that term's arithmetic).
        model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets)
        )
    ids = torch.randint(0, V, (B, T))

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=ids, labels=ids)
        return list(model.parameters())

    return saved_bytes(run) / (B * T)


def plan_decoder_per_token(layers: int, checkpointing: bool, lora: bool = False) -> float:
    text = TextShapes(hidden=D, intermediate=MLP, layers=layers, heads=4, kv_heads=4, vocab=V)
    shapes = ModelShapes(
        text, VisionShapes(hidden=8, intermediate=8, layers=1, image_size=8, patch_size=4), 4
    )
    s = PlanSettings(batch=B, seq_len=T, gradient_checkpointing=checkpointing, bottleneck=False,
                     mode="lora" if lora else "full", lora_r=8, lora_dropout=0.0)  # fmt: skip
    per_token = activation_rows(shapes, s)["activations: decoder"] / (B * T)
    # autocast's 16-bit copies of the float32 adapters live through the forward, layer by layer
    return per_token + (2 * lora_params(shapes, s) / (B * T) if lora else 0)


@pytest.mark.parametrize("checkpointing, lora", [(False, False), (True, False), (False, True)])
def test_decoder_layer_activations_match_autograd(checkpointing, lora):
    # The difference of two depths isolates one layer (embedding, final norm and loss cancel out).
    measured = llama_saved_per_token(3, checkpointing, lora) - llama_saved_per_token(1, checkpointing, lora)
    planned = plan_decoder_per_token(3, checkpointing, lora) - plan_decoder_per_token(1, checkpointing, lora)
    if checkpointing:
        assert measured == planned == 2 * 2 * D  # each checkpointed layer keeps only its bf16 input
    else:
        assert planned == pytest.approx(measured, rel=0.10)


def test_bottleneck_activations_match_autograd():
    from vittle_cli.model.bottleneck import VittleBottleneck, VittleConfig

    bottleneck = VittleBottleneck(VittleConfig(), hidden_size=D).to(torch.bfloat16).train()
    bottleneck.alpha = 0.5
    hidden = torch.randn(B, T, D, dtype=torch.bfloat16, requires_grad=True)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, : T // 4] = True

    def run():
        bottleneck(hidden, mask)
        return [*bottleneck.parameters(), hidden]

    measured = saved_bytes(run) / (B * T)
    assert 22 * D == pytest.approx(measured, rel=0.10), measured
