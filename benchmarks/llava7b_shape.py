"""The LLaVA-1.5-7B shape (CLIP ViT-L/336 tower + Llama-7B decoder) as configs, for GPU benchmarks with
random weights: nothing is downloaded."""

from __future__ import annotations

IMAGE_SEQ_LENGTH = 576  # (336 / 14)^2 patches


def llava15_7b_config(*, vocab_size: int, image_token_id: int, num_layers: int = 32, **text_kwargs):
    """A LlavaConfig with LLaVA-1.5-7B's sizes; `text_kwargs` go to the LlamaConfig (token ids, eps)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=num_layers,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        **text_kwargs,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=IMAGE_SEQ_LENGTH,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
    )
