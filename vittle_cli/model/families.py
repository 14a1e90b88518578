"""The model families vittle supports: exactly those tested end to end with their published files.

tests/integration/test_families.py runs each family here through render -> attach -> train -> save -> reload ->
merge -> eval (fast path) -> generate, on a small random model built from the family's published config,
tokenizer, processor and chat template (tests/fixtures/models/README.md names the checkpoints). Adding a
family means adding its fixture and an entry here; anything else is refused with the list below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vittle_cli.errors import ModelError
from vittle_cli.layout import MODEL_CONFIG


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.model_type values
    tested_with: str  # the published checkpoint whose files the tests use
    decoder: str = "language_model"  # attribute of the inner multimodal model that holds the decoder
    gaps: tuple[str, ...] = ()  # what is known not to work, or not to be tested
    takes_video: bool = False  # sharegpt `videos` train (data/video.py); other families refuse them


_NO_TORCHVISION = (
    "without torchvision the processor is built image-only (Qwen2VLImageProcessorPil); vittle makes the "
    "video tensors from it (data/video.py), resizing frames with PIL where transformers' video processor "
    "uses torchvision"
)
FAMILIES: tuple[Family, ...] = (
    Family(
        "LLaVA-1.5",
        ("llava",),
        "llava-hf/llava-1.5-7b-hf",
        gaps=(
            "the published chat template renders no system prompt and no </s> after an answer; vittle adds "
            "the tokenizer's EOS to each answer's labels (data/render.py close_responses), as LLaVA trains, "
            "but the system prompt stays absent (model.compose uses the reference template, which has both)",
        ),
    ),
    Family(
        "LLaVA-NeXT",
        ("llava_next",),
        "llava-hf/llava-v1.6-vicuna-7b-hf (config, processor settings, chat template, tokenizer_config, "
        "special tokens and generation config as published; tokenizer.json derived from LLaVA-1.5's, less its "
        "<pad>); and llava-hf/llama3-llava-next-8b-hf (LLaMA-3-8B): its published chat template, processor_config, "
        "special tokens and generation config, Meta's Llama 3 tokenizer.model, config / image processor / "
        "tokenizer_config reconstructed from the published values",
        gaps=(
            "neither checkpoint's own tokenizer.json was in the tests' sources (the Mistral and 34B variants' "
            "tokenizers and templates are untested)",
            "the vicuna checkpoint uses LLaVA-1.5's template: no system prompt (EOS is added as for LLaVA-1.5)",
            "llama3-llava-next's template has no system prompt and no {% generation %} markers; its answers "
            "start after a blank line ('assistant<|end_header_id|>\\n\\n\\nYes<|eot_id|>')",
        ),
    ),
    Family(
        "Qwen2-VL",
        ("qwen2_vl",),
        "Qwen/Qwen2-VL-2B (config, tokenizer, processor) + Qwen2-VL-2B-Instruct chat template",
        gaps=(_NO_TORCHVISION,),
        takes_video=True,
    ),
    Family(
        "Qwen2.5-VL",
        ("qwen2_5_vl",),
        "Qwen/Qwen2.5-VL-7B-Instruct (every file as published; tokenizer from vocab.json + merges.txt)",
        gaps=(_NO_TORCHVISION,),
        takes_video=True,
    ),
)
FAMILIES += (
    Family(
        "Idefics3 / SmolVLM",
        ("idefics3",),
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        decoder="text_model",
        gaps=(
            "a small image is upscaled to the processor's longest edge (2048) and split into 4 x 4 tiles + "
            "1 global view: 1088 image tokens for any image up to 512 px, so sequences are long",
        ),
    ),
)
FAMILIES += (
    Family(
        "LLaVA-OneVision",
        ("llava_onevision",),
        "llava-hf/llava-onevision-qwen2-0.5b-ov-hf (processor, token files and config as published, the current "
        "chat template rebuilt to its published size; tokenizer_config.json reconstructed from the published values)",
        gaps=(
            "without torchvision the processor is built image-only (LlavaOnevisionImageProcessorPil, no video)",
            "anyres_max_9: a small image gets its 729 base tokens + 27 rows of 27 tile tokens and a newline "
            "each (1485 image tokens for a 64x64 image), so sequences are long",
            "the published template has no system prompt; answers end with <|im_end|> (labelled)",
            "the current template renders an answer after 'assistant \\n' but asks with 'assistant\\n': vittle "
            "trains answers after the generation prompt (data/render.py), as inference asks",
        ),
    ),
)
# Processor classes whose video half needs torchvision; without it vittle builds the image half only.
_IMAGE_ONLY = {
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "llava_onevision": "LlavaOnevisionProcessor",
}
# processor class -> its image processor that needs no torchvision
_IMAGE_HALF = {
    "Qwen2VLProcessor": "Qwen2VLImageProcessorPil",
    "Qwen2_5_VLProcessor": "Qwen2VLImageProcessorPil",
    "LlavaOnevisionProcessor": "LlavaOnevisionImageProcessorPil",
}
# The processors of the families that take video, whose video half vittle builds itself (data/video.py).
VIDEO_PROCESSORS = frozenset({"Qwen2VLProcessor", "Qwen2_5_VLProcessor"})


def supported_names() -> str:
    return ", ".join(f.name for f in FAMILIES)


def video_family_names() -> str:
    return ", ".join(f.name for f in FAMILIES if f.takes_video)


def family_of(model_type: str | None) -> Family | None:
    return next((f for f in FAMILIES if model_type in f.model_types), None)


def require_supported(config: Any) -> Family:
    """The family of a model config (or a model), refusing any other architecture.

    Raises:
        ModelError: the model type is not one of the tested families (names them).
    """
    config = getattr(config, "config", config)
    model_type = getattr(config, "model_type", None)
    family = family_of(model_type)
    if family is None:
        arch = (getattr(config, "architectures", None) or [model_type])[0]
        raise ModelError(
            f"{arch} (model_type {model_type!r}) is not a family vittle supports; supported and tested "
            f"image-text-to-text families: {supported_names()} (`vittle env` lists them with known gaps; "
            "model.compose builds a LLaVA from a language model and a vision tower)"
        )
    return family


def support_rows() -> list[tuple[str, str]]:
    """(family, what it is tested with; known gaps) rows for `vittle env` and the docs."""
    rows = []
    for f in FAMILIES:
        gaps = "; ".join(f.gaps) if f.gaps else "none known"
        rows.append((f.name, f"tested with {f.tested_with}. Known gaps: {gaps}"))
    return rows


def decoder_of(inner: Any) -> Any:
    """The decoder (language model) module of an inner multimodal model, or None."""
    names = dict.fromkeys(f.decoder for f in FAMILIES)
    for name in names:
        module = getattr(inner, name, None)
        if module is not None:
            return module
    return None


# ---------------------------------------------------------------------------------------------- processors


def load_processor(source: str, **hub: Any) -> Any:
    """AutoProcessor.from_pretrained, except that a processor whose video half needs the missing
    torchvision (Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision) is built from its image half (_IMAGE_HALF) and
    tokenizer."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(source, **hub)
    except (ImportError, OSError) as e:
        # Without torchvision the video processor cannot be built (ImportError); a folder saved image-only
        # has no video processor config to build it from (OSError).
        message = str(e).lower()
        if "torchvision" not in message and "video processor" not in message:
            raise
        parent = _image_only_parent(source, hub)
        if parent is None:
            raise
        return _image_only_processor(source, parent, hub)


def _image_only_parent(source: str, hub: dict) -> str | None:
    """The processor class to build image-only for `source` (by its config's model type, else by the
    processor class its processor files name), or None."""
    from transformers.utils import cached_file

    for name, key in (
        (MODEL_CONFIG, "model_type"),
        ("processor_config.json", "processor_class"),
        ("preprocessor_config.json", "processor_class"),
    ):
        path = cached_file(source, name, _raise_exceptions_for_missing_entries=False, **hub)
        value = json.loads(Path(path).read_text()).get(key) if path else None
        if value in _IMAGE_ONLY:
            return _IMAGE_ONLY[value]
        if value in _IMAGE_ONLY.values():
            return value
    return None


def _image_only_processor(source: str, parent_name: str, hub: dict) -> Any:
    import transformers
    from transformers import AutoTokenizer

    parent = getattr(transformers, parent_name)
    image_half = getattr(transformers, _IMAGE_HALF[parent_name])

    class ImageOnlyProcessor(parent):
        """`parent` without its video processor; saved under the parent's name, so a machine with
        torchvision loads the saved folder with plain AutoProcessor."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            # ProcessorMixin pairs positional sub-processors with this signature's names: the video
            # processor (None) is dropped.
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        def to_dict(self) -> dict[str, Any]:
            out = super().to_dict()
            out["processor_class"] = parent.__name__
            # this class's signature hides the parent's settings from the base to_dict: save them too
            out.update({k: getattr(self, k) for k in _setting_names(parent) if hasattr(self, k)})
            return out

    kwargs = {k: v for k, v in hub.items() if k in ("revision", "trust_remote_code")}
    return ImageOnlyProcessor(
        image_processor=image_half.from_pretrained(source, **kwargs),
        tokenizer=AutoTokenizer.from_pretrained(source, **kwargs),
        chat_template=_chat_template(source, kwargs),
        **_processor_settings(source, parent, kwargs),
    )


def _processor_settings(source: str, parent: Any, hub: dict) -> dict[str, Any]:
    """processor_config.json's settings that `parent` takes (LLaVA-OneVision's num_image_tokens and
    vision_feature_select_strategy decide how many image tokens a prompt gets)."""
    from transformers.utils import cached_file

    path = cached_file(source, "processor_config.json", _raise_exceptions_for_missing_entries=False, **hub)
    if not path:
        return {}
    accepted = _setting_names(parent)
    return {k: v for k, v in json.loads(Path(path).read_text()).items() if k in accepted}


def _setting_names(parent: Any) -> set[str]:
    """The settings `parent.__init__` takes besides its sub-processors and chat template (which
    _image_only_processor builds itself; a folder saved by transformers 5 nests them in processor_config)."""
    import inspect

    skip = {"self", "args", "kwargs", "chat_template", "image_processor", "tokenizer", "video_processor"}
    return set(inspect.signature(parent.__init__).parameters) - skip


def _chat_template(source: str, hub: dict) -> str | None:
    """The processor's chat template (chat_template.jinja or chat_template.json), else the tokenizer's."""
    from transformers.utils import cached_file

    for name in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(source, name, _raise_exceptions_for_missing_entries=False, **hub)
        if path:
            text = Path(path).read_text()
            return text if name.endswith(".jinja") else json.loads(text)["chat_template"]
    return None
