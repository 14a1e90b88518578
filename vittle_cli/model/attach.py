"""Place a VittleBottleneck inside a Hugging Face vision-language model, reversibly.

Design (shared/PLATFORM.md "Attaching the bottleneck"): the bottleneck is the submodule
`vittle_bottleneck` of the top-level model (optimizer, ZeRO-3, peft modules_to_save and state_dict see
it); a forward pre-hook on the inner multimodal model (`model.model`) turns `input_ids` into the visual
mask; a forward hook (prepend=True) on decoder layer l replaces that layer's output. The hooks look the
bottleneck up by attribute on every call, because peft may have wrapped it, and call it as a module,
because ZeRO-3 gathers parameters on module calls. Nothing of the base model is changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from vittle_cli.errors import ModelError
from vittle_cli.model.bottleneck import TokenSplit, VittleBottleneck, VittleConfig, split_tokens
from vittle_cli.model.families import decoder_of, supported_names

BOTTLENECK_ATTR = "vittle_bottleneck"
_STATE_ATTR = "_vittle_attachment"
# The tested families (vittle_cli/model/families.py).
SUPPORTED_FAMILIES = supported_names()
_TOKEN_ID_FIELDS = ("image_token_id", "image_token_index", "video_token_id", "video_token_index")
_WRAPPER_TYPES = ("DeepSpeedEngine", "DistributedDataParallel", "DataParallel", "FullyShardedDataParallel")


@dataclass
class _Attachment:
    """What attach_bottleneck did to a model, so that detach_bottleneck can undo exactly that."""

    token_ids: list[int]
    handles: list[Any] = field(default_factory=list)
    visual_mask: TokenSplit | None = None  # of the forward in progress (mask + its indices)
    # The last finished forward's split, kept for a backward-pass recompute of the hooked layer.
    recompute_mask: TokenSplit | None = None
    # The token ids as a tensor per (device, dtype): built once, not on every forward.
    token_id_tensors: dict[tuple[torch.device, torch.dtype], Tensor] = field(default_factory=dict)

    def token_id_tensor(self, like: Tensor) -> Tensor:
        key = (like.device, like.dtype)
        if key not in self.token_id_tensors:
            self.token_id_tensors[key] = torch.tensor(self.token_ids, device=like.device, dtype=like.dtype)
        return self.token_id_tensors[key]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The transformers model inside peft / DeepSpeed / DDP wrappers."""
    while True:
        if callable(getattr(model, "get_base_model", None)):  # PeftModel
            model = model.get_base_model()
        elif type(model).__name__ in _WRAPPER_TYPES and isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            return model


def _multimodal_model(model: nn.Module) -> nn.Module:
    inner = getattr(unwrap_model(model), "model", None)
    if not isinstance(inner, nn.Module) or not isinstance(decoder_of(inner), nn.Module):
        raise ModelError(
            f"cannot place the Vittle bottleneck in {type(unwrap_model(model)).__name__}: no multimodal "
            f"decoder (`model.language_model`) found; supported: {SUPPORTED_FAMILIES}"
        )
    return inner


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of the language model (`model.model.language_model.layers` in transformers 5.x).

    Raises:
        ModelError: an architecture vittle cannot place, naming the supported families.
    """
    layers = getattr(decoder_of(_multimodal_model(model)), "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ModelError(
            f"cannot find the decoder layers of {type(unwrap_model(model)).__name__}; "
            f"supported: {SUPPORTED_FAMILIES}"
        )
    return layers


def image_token_ids(model: nn.Module) -> list[int]:
    """Token ids that mark visual positions: the image token and, where the model has one, the video token.

    Raises:
        ModelError: the model config names no image token id.
    """
    config = unwrap_model(model).config
    ids: list[int] = []
    for name in _TOKEN_ID_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value >= 0 and value not in ids:
            ids.append(value)
    if not ids:
        raise ModelError(
            f"{type(unwrap_model(model)).__name__} has no image token id in its config (image_token_id / "
            f"image_token_index); vittle needs it to find the visual tokens; supported: {SUPPORTED_FAMILIES}"
        )
    return ids


def get_bottleneck(model: nn.Module) -> VittleBottleneck | None:
    """The bottleneck that runs in the model's forward, or None when none is attached.

    Works through PeftModel / DeepSpeed wrappers and peft's ModulesToSaveWrapper (returns the active
    trainable copy while the adapter is enabled, the original otherwise).
    """
    obj = unwrap_model(model)._modules.get(BOTTLENECK_ATTR)
    if obj is None or isinstance(obj, VittleBottleneck):
        return obj
    copies = getattr(obj, "modules_to_save", None)
    active = getattr(obj, "active_adapter", None)
    if isinstance(active, (list, tuple)):
        active = active[0] if active else None
    if copies is not None and active in copies and not getattr(obj, "disable_adapters", False):
        return copies[active]
    original = getattr(obj, "original_module", None)
    return original if isinstance(original, VittleBottleneck) else None


def _hidden_size(model: nn.Module) -> int:
    config = unwrap_model(model).config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    size = getattr(text, "hidden_size", None)
    if not isinstance(size, int):
        raise ModelError(f"cannot read the language model's hidden_size from {type(config).__name__}")
    return size


def _device_of(layer: nn.Module, fallback: Tensor) -> torch.device:
    """Where layer l runs: with device_map="auto" that need not be where the embeddings are."""
    param = next(layer.parameters(), None)
    if param is None or param.device.type == "meta":  # offloaded layers run on the embeddings' device
        return fallback.device
    return param.device


def _make_pre_hook(state: _Attachment, top: nn.Module):
    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            embeds = kwargs.get("inputs_embeds")
            if embeds is None:
                state.visual_mask = None
                return
            if any(kwargs.get(k) is not None for k in ("pixel_values", "pixel_values_videos")):
                raise ModelError(
                    "the Vittle bottleneck needs input_ids to find the image tokens; call the model with "
                    "input_ids (not inputs_embeds) when passing images"
                )
            # inputs_embeds without images: every position is text.
            mask = torch.zeros(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        else:
            mask = torch.isin(input_ids, state.token_id_tensor(input_ids))
        # Indices once per forward: every hooked layer (and its checkpoint recompute) reuses them.
        state.visual_mask = split_tokens(mask)
        bottleneck = get_bottleneck(top)
        if bottleneck is not None:
            bottleneck.reset_stats()

    return pre_hook


def _make_post_hook(state: _Attachment):
    def post_hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        # A stale mask must never meet another forward's hidden states; only a backward recompute of
        # this forward's layers may still use it (see _mask_for_layer).
        state.recompute_mask = state.visual_mask
        state.visual_mask = None

    return post_hook


def _in_backward() -> bool:
    """True while autograd runs a backward pass (where gradient checkpointing recomputes layers)."""
    return torch._C._current_graph_task_id() != -1


def _mask_for_layer(state: _Attachment) -> TokenSplit:
    """The visual mask (with its indices) for a call of a hooked decoder layer.

    transformers 5.17-5.22 re-run the whole layer call, hooks included, in the backward recompute of
    gradient checkpointing, after the multimodal forward has ended: the recompute gets the mask of the
    forward it repeats (and, as the checkpoint restores the RNG state, the same noise).
    """
    if state.visual_mask is not None:
        return state.visual_mask
    if state.recompute_mask is not None and _in_backward():
        return state.recompute_mask
    raise ModelError(
        "a decoder layer with the Vittle bottleneck ran outside the multimodal model's forward; "
        "call the top-level model (or model.model) with input_ids"
    )


def _make_layer_hook(state: _Attachment, top: nn.Module, apply_visual: bool, apply_text: bool):
    def layer_hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        mask = _mask_for_layer(state)
        # Looked up per call: peft's modules_to_save replaces the attribute with a wrapper.
        bottleneck = getattr(top, BOTTLENECK_ATTR)
        hidden = output[0] if isinstance(output, tuple) else output  # tuple in transformers 4.x
        new = bottleneck(hidden, mask, apply_visual=apply_visual, apply_text=apply_text)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return layer_hook


def attach_bottleneck(
    model: nn.Module, config: VittleConfig, *, existing: VittleBottleneck | None = None
) -> VittleBottleneck:
    """Create a VittleBottleneck for `model` and hook it after decoder layers layer_v / layer_t.

    Attach before wrapping with peft, and pass `modules_to_save=["vittle_bottleneck"]` to LoraConfig so the
    bottleneck is trained in full beside the adapter and saved with it.

    Returns:
        The new bottleneck (dtype of the input embeddings, device of layer layer_v, the model's train flag).

    Raises:
        ModelError: unsupported architecture, no image token id, layer out of range, already attached.
    """
    top = unwrap_model(model)
    if BOTTLENECK_ATTR in top._modules or hasattr(top, _STATE_ATTR):
        raise ModelError(
            "a Vittle bottleneck is already attached to this model; call detach_bottleneck first"
        )
    layers = find_decoder_layers(top)
    inner = _multimodal_model(top)
    token_ids = image_token_ids(top)
    layer_v, layer_t = config.resolve_layers(len(layers))
    # The module's config records what was resolved, so saving, dry-run and inspect never re-derive it.
    config = config.replace(layer_v=layer_v, layer_t=layer_t, hidden_size=_hidden_size(top))
    reference = top.get_input_embeddings().weight
    if existing is not None:  # re-attach a detached bottleneck (benchmarks switch it on and off per step)
        if existing.config.model_dump() != config.model_dump():
            raise ModelError("the bottleneck to re-attach was made for other layers or another hidden size")
        bottleneck = existing
    else:
        bottleneck = VittleBottleneck(config).to(
            device=_device_of(layers[layer_v], reference), dtype=reference.dtype
        )
    bottleneck.train(top.training)
    top.add_module(BOTTLENECK_ATTR, bottleneck)

    state = _Attachment(token_ids=token_ids)
    state.handles.append(inner.register_forward_pre_hook(_make_pre_hook(state, top), with_kwargs=True))
    state.handles.append(inner.register_forward_hook(_make_post_hook(state), with_kwargs=True))
    for index in sorted({layer_v, layer_t}):
        hook = _make_layer_hook(state, top, apply_visual=index == layer_v, apply_text=index == layer_t)
        # prepend: output_hidden_states and any later hook see the post-bottleneck state.
        state.handles.append(layers[index].register_forward_hook(hook, with_kwargs=True, prepend=True))
    setattr(top, _STATE_ATTR, state)
    return bottleneck


def attached_layers(model: nn.Module) -> tuple[int, int] | None:
    """(layer_v, layer_t) of the attached bottleneck (as resolved when attaching), or None."""
    bottleneck = get_bottleneck(model)
    return None if bottleneck is None else (bottleneck.config.layer_v, bottleneck.config.layer_t)


def detach_bottleneck(model: nn.Module) -> nn.Module:
    """Remove the hooks and the `vittle_bottleneck` submodule: the model is exactly the original again.

    Returns:
        The removed module (the bottleneck, or peft's wrapper around it).

    Raises:
        ModelError: no bottleneck is attached.
    """
    top = unwrap_model(model)
    state = getattr(top, _STATE_ATTR, None)
    if state is None:
        raise ModelError("no Vittle bottleneck is attached to this model")
    for handle in state.handles:
        handle.remove()
    delattr(top, _STATE_ATTR)
    removed = top._modules.pop(BOTTLENECK_ATTR)
    return removed
