"""The shapes of a LLaVA-style model (decoder + vision tower + MLP projector) and its parameter counts.

The memory planner (train/memory.py) needs sizes, not weights: they come from a transformers config (a local
folder, the built-in model, or a hub model's config.json already in the local cache; never the network) or,
for the models the shipped recipes name, from the table below when no config is at hand.

Parameter counts are written out for a Llama-family decoder (q/k/v/o + gate/up/down, RMSNorm, no biases),
a CLIP/SigLIP-style vision encoder (biased linears, two LayerNorms per layer) and LLaVA's two-layer projector;
tests check them against the real modules built on the meta device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The decoder's linears per layer, as LoRA targets them (model/prepare.py LM_LORA_SUFFIXES).
ATTENTION_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TextShapes:
    """A Llama-family decoder."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tie_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each decoder linear in one layer."""
        d, i, kv = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        return {
            "q_proj": (d, self.heads * self.head_dim),
            "k_proj": (d, kv),
            "v_proj": (d, kv),
            "o_proj": (self.heads * self.head_dim, d),
            "gate_proj": (d, i),
            "up_proj": (d, i),
            "down_proj": (i, d),
        }

    def linear_params(self) -> int:
        """Parameters of all decoder linears (what QLoRA quantises)."""
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())

    def other_params(self) -> int:
        """Token embeddings, the two RMSNorms per layer and the final norm."""
        return self.vocab * self.hidden + self.layers * 2 * self.hidden + self.hidden

    def lm_head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab * self.hidden


@dataclass(frozen=True)
class VisionShapes:
    """A CLIP/SigLIP-style ViT (patch conv without bias, class token, learned positions, pre/post LayerNorm)."""

    hidden: int
    intermediate: int
    layers: int
    image_size: int
    patch_size: int
    channels: int = 3
    class_token: bool = True

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def params(self) -> int:
        d, i = self.hidden, self.intermediate
        positions = self.patches + (1 if self.class_token else 0)
        embeddings = self.channels * self.patch_size**2 * d + positions * d + (d if self.class_token else 0)
        per_layer = 4 * (d * d + d) + (d * i + i) + (i * d + d) + 2 * 2 * d
        norms = 2 * 2 * d  # CLIP's pre_layrnorm and post_layernorm
        return embeddings + self.layers * per_layer + norms

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        d, i = self.hidden, self.intermediate
        return {
            "q_proj": (d, d),
            "k_proj": (d, d),
            "v_proj": (d, d),
            "out_proj": (d, d),
            "fc1": (d, i),
            "fc2": (i, d),
        }


@dataclass(frozen=True)
class ModelShapes:
    """Everything the memory plan needs to know about the model, and where it came from."""

    text: TextShapes
    vision: VisionShapes
    image_tokens: int  # visual tokens per image in the decoder's sequence
    source: str = "config"

    def projector_params(self) -> int:
        """LLaVA's mlp2x_gelu projector: Linear(vision, text) + GELU + Linear(text, text)."""
        dv, d = self.vision.hidden, self.text.hidden
        return dv * d + d + d * d + d

    def projector_linear_shapes(self) -> dict[str, tuple[int, int]]:
        dv, d = self.vision.hidden, self.text.hidden
        return {"linear_1": (dv, d), "linear_2": (d, d)}

    def largest_layer_params(self) -> int:
        """Parameters of the largest single module (DeepSpeed's ZeRO-3 gathers one at a time): here the
        token embedding or lm_head, or one decoder MLP linear."""
        t = self.text
        return max(t.vocab * t.hidden, *(a * b for a, b in t.linear_shapes().values()))

    def total_params(self, bottleneck: int = 0) -> int:
        t = self.text
        return (
            self.vision.params()
            + self.projector_params()
            + t.linear_params()
            + t.other_params()
            + t.lm_head_params()
            + bottleneck
        )


def bottleneck_params(hidden: int, learnable_prior: bool) -> int:
    """Two posterior nets Linear(d, d) + GELU + Linear(d, 2d) (visual, text), plus 4 d-vectors for prior L."""
    per_net = (hidden * hidden + hidden) + (hidden * 2 * hidden + 2 * hidden)
    return 2 * per_net + (4 * hidden if learnable_prior else 0)


# ----------------------------------------------------------------------------------------------------------
# From a transformers config


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    value = cfg.get(name, default) if isinstance(cfg, dict) else getattr(cfg, name, default)
    return default if value is None else value


def text_shapes_from_config(cfg: Any) -> TextShapes:
    heads = int(_get(cfg, "num_attention_heads"))
    return TextShapes(
        hidden=int(_get(cfg, "hidden_size")),
        intermediate=int(_get(cfg, "intermediate_size")),
        layers=int(_get(cfg, "num_hidden_layers")),
        heads=heads,
        kv_heads=int(_get(cfg, "num_key_value_heads", heads)),
        vocab=int(_get(cfg, "vocab_size")),
        tie_embeddings=bool(_get(cfg, "tie_word_embeddings", False)),
    )


def vision_shapes_from_config(cfg: Any) -> VisionShapes:
    model_type = str(_get(cfg, "model_type", ""))
    return VisionShapes(
        hidden=int(_get(cfg, "hidden_size")),
        intermediate=int(_get(cfg, "intermediate_size")),
        layers=int(_get(cfg, "num_hidden_layers")),
        image_size=int(_get(cfg, "image_size")),
        patch_size=int(_get(cfg, "patch_size")),
        channels=int(_get(cfg, "num_channels", 3)),
        class_token="siglip" not in model_type,
    )


def shapes_from_config(config: Any, source: str = "config") -> ModelShapes:
    """ModelShapes of a LLaVA-style config (a transformers config object or a plain dict).

    Raises:
        ValueError: not a LLaVA-style (decoder + vision tower + MLP projector) config.
    """
    model_type = str(_get(config, "model_type", ""))
    text_cfg, vision_cfg = _get(config, "text_config"), _get(config, "vision_config")
    if model_type not in ("llava", "vipllava") or text_cfg is None or vision_cfg is None:
        raise ValueError(
            f"model type {model_type or 'unknown'!r}: the memory planner knows LLaVA-style models "
            "(Llama-family decoder + CLIP/SigLIP tower + MLP projector) only"
        )
    vision = vision_shapes_from_config(vision_cfg)
    strategy = _get(config, "vision_feature_select_strategy", "default")
    default_tokens = vision.patches + (1 if strategy == "full" and vision.class_token else 0)
    tokens = int(_get(config, "image_seq_length", default_tokens))
    return ModelShapes(text_shapes_from_config(text_cfg), vision, tokens, source)


# The models the shipped recipes name, written out so `--dry-run` can plan them without their config.json
# (values as in the public config.json files of these repositories, with transformers' defaults filled in).
_VICUNA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000}  # fmt: skip
_VICUNA_13B = {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
               "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000}  # fmt: skip
_CLIP_L_336 = {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
               "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14}  # fmt: skip
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    # llava-hf adds <image> and a pad token: vocab 32064.
    "llava-hf/llava-1.5-7b-hf": {"model_type": "llava", "image_seq_length": 576,
                                 "text_config": {**_VICUNA_7B, "vocab_size": 32064}, "vision_config": _CLIP_L_336},
    "llava-hf/llava-1.5-13b-hf": {"model_type": "llava", "image_seq_length": 576,
                                  "text_config": {**_VICUNA_13B, "vocab_size": 32064}, "vision_config": _CLIP_L_336},
    "lmsys/vicuna-7b-v1.5": _VICUNA_7B,
    "lmsys/vicuna-13b-v1.5": _VICUNA_13B,
    "openai/clip-vit-large-patch14-336": _CLIP_L_336,
}  # fmt: skip


def known_shapes(name: str) -> ModelShapes | None:
    """Shapes of a model the shipped recipes name, from KNOWN_CONFIGS (None for any other name)."""
    config = KNOWN_CONFIGS.get(name)
    if config is None or "text_config" not in config:
        return None
    return shapes_from_config(config, source=f"vittle's table of known shapes ({name})")


def composed_shapes(language_model: Any, vision_tower: Any, source: str) -> ModelShapes:
    """Shapes of model.compose: a causal LM + a vision tower (compose_llava adds <image> to the vocabulary;
    the pad token reuses <unk>)."""
    text = text_shapes_from_config(language_model)
    text = TextShapes(**{**text.__dict__, "vocab": text.vocab + 1})
    vision_cfg = _get(vision_tower, "vision_config", vision_tower)
    vision = vision_shapes_from_config(vision_cfg)
    return ModelShapes(text, vision, vision.patches, source)
