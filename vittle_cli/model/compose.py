"""Stage-1 composition: a causal language model + a CLIP vision tower + a projector -> an HF-native
LlavaForConditionalGeneration with its LlavaProcessor (model.compose in a recipe)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vittle_cli.errors import ModelError
from vittle_cli.model.reference import trainable_source
from vittle_cli.model.skeleton import zero3_init_paused

# The reference LLaVA-1.5 (conv_vicuna_v1) system prompt.
LLAVA15_SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
# Reference mm_projector.bin keys (Sequential(Linear, GELU, Linear)) -> LlavaMultiModalProjector names.
_PROJECTOR_KEYS = {"0.weight": "linear_1.weight", "0.bias": "linear_1.bias",
                   "2.weight": "linear_2.weight", "2.bias": "linear_2.bias"}  # fmt: skip


def llava15_chat_template(system_prompt: str = LLAVA15_SYSTEM_PROMPT) -> str:
    """The LLaVA-1.5 chat template (USER: <image>\\n... ASSISTANT: ...</s>) with `system_prompt`."""
    from vittle_cli.model.builtin import CHAT_TEMPLATE, SYSTEM_PROMPT

    # Same layout as builtin:tiny-llava; the prompt is swapped in as a double-quoted literal because the
    # reference prompt contains an apostrophe.
    quoted = "'" + SYSTEM_PROMPT + " '"
    return CHAT_TEMPLATE.replace(quoted, json.dumps(system_prompt + " "))


def compose_llava(
    language_model: str,
    vision_tower: str,
    projector_weights: str | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[nn.Module, Any]:
    """Build an HF-native LlavaForConditionalGeneration from a causal LM, a CLIP vision model and (optional)
    projector weights, plus its LlavaProcessor (LLaVA-1.5 layout: second-to-last CLIP layer, CLS dropped).

    Adds the `<image>` token (and a pad token if missing) to the tokenizer and resizes the embeddings.
    The parts are loaded once and moved into the LLaVA shell (built on the meta device), not copied.

    Raises:
        ModelError: a part cannot be found or loaded, or the projector weights do not fit.
    """
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        CLIPVisionModel,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    lm_source = trainable_source(language_model, "model.compose.language_model")
    vt_source = trainable_source(vision_tower, "model.compose.vision_tower")
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(lm_source, trust_remote_code=trust_remote_code)
        lm = AutoModelForCausalLM.from_pretrained(
            lm_source, dtype=dtype, trust_remote_code=trust_remote_code, **extra
        )
        tower = CLIPVisionModel.from_pretrained(vt_source, dtype=dtype, **extra)
    except (OSError, ValueError) as e:
        raise ModelError(
            f"cannot load a model.compose part: {str(e).splitlines()[0]} (model.compose.language_model must be "
            "a causal LM and model.compose.vision_tower a CLIP model, as hub names or local folders)"
        ) from e
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    if tokenizer.pad_token is None:
        # LLaVA-1.5 pads with <unk>; add a pad token only when there is none to reuse.
        if tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))
    vision = tower.config
    config = LlavaConfig(
        vision_config=vision,
        text_config=lm.config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(vision.image_size // vision.patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
    )
    config.pad_token_id = tokenizer.pad_token_id
    with zero3_init_paused(), torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.language_model = lm.get_decoder()
    model.lm_head = lm.get_output_embeddings()
    model.model.vision_tower = tower
    model.model.multi_modal_projector = LlavaMultiModalProjector(config).to(dtype)
    if projector_weights:
        load_projector_weights(model.model.multi_modal_projector, projector_weights)
    left_on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left_on_meta:
        raise ModelError(f"composition left {left_on_meta[0]} uninitialised; please report this as a bug")
    model.generation_config = lm.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, _llava_processor(tokenizer, vt_source, vision.patch_size)


def _llava_processor(tokenizer: Any, vision_source: str, patch_size: int) -> Any:
    from transformers import CLIPImageProcessor, CLIPImageProcessorPil, LlavaProcessor

    # The torchvision-backed processor cannot be installed beside CPU torch; the PIL one gives the same pixels.
    image_cls = CLIPImageProcessor if importlib.util.find_spec("torchvision") else CLIPImageProcessorPil
    try:
        image_processor = image_cls.from_pretrained(vision_source)
    except OSError as e:
        raise ModelError(
            f"model.compose.vision_tower {vision_source} has no image processor (preprocessor_config.json); "
            "use a full CLIP checkpoint such as openai/clip-vit-large-patch14-336"
        ) from e
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=llava15_chat_template(),
    )


def load_projector_weights(projector: nn.Module, path: str | os.PathLike) -> None:
    """Load stage-1 projector weights into a LlavaMultiModalProjector, exactly (strict, same shapes).

    Accepts the reference mm_projector.bin (`model.mm_projector.0.weight`, ...) or a .safetensors file with
    the same keys or LLaVA-HF names (`multi_modal_projector.linear_1.weight`, ...).

    Raises:
        ModelError: missing file, unknown or missing keys, or shapes that do not match the model.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"model.compose.projector_weights: {path} does not exist; fix the path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for key, value in state.items():
        for marker in ("mm_projector.", "multi_modal_projector."):
            key = key.rpartition(marker)[2] if marker in key else key
        mapped[_PROJECTOR_KEYS.get(key, key)] = value
    expected = projector.state_dict()
    problems = sorted(set(expected) ^ set(mapped))
    problems += [
        f"{k}: file {tuple(mapped[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in mapped and mapped[k].shape != v.shape
    ]
    if problems:
        raise ModelError(
            f"projector weights {path} do not fit this model ({'; '.join(problems)}); use the mm_projector.bin "
            "trained for this language model and vision tower"
        )
    projector.load_state_dict(mapped, strict=True)
