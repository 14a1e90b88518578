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


def llava15_processor(tokenizer, chat_template: str):
    """A LLaVA-1.5-shaped processor around `tokenizer`: 336 px CLIP preprocessing (CLIP's mean/std), patch 14,
    one extra CLS token, so 576 image tokens per image."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template,
    )
