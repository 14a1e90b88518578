"""A tiny Qwen2-VL and a processor that builds its inputs the way Qwen2VLProcessor does (built in code).

transformers' Qwen2VLProcessor cannot be constructed here (its video processor needs torchvision, which
cannot be installed beside the CPU torch wheel), so `TinyQwenProcessor` does its job for images: the
chat template puts <|vision_start|><|image_pad|><|vision_end|> before the text, the PIL image processor
makes the patches and image_grid_thw, and each <|image_pad|> is expanded to grid.prod() / merge**2 tokens.
"""

from __future__ import annotations

import inspect

import torch

SPECIALS = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>",
            "<|vision_end|>", "<|video_pad|>"]  # fmt: skip
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Is there a dog in the image? Is there a red circle? yes no Answer the question using a single word or phrase."
]


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>"}, padding_side="left", chat_template=TEMPLATE,
    )  # fmt: skip


class TinyQwenProcessor:
    """Qwen2VLProcessor's image path, for the tests and the throughput benchmark."""

    def __init__(self, with_token_types: bool = True):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        self.tokenizer = _tokenizer()
        self.image_processor = Qwen2VLImageProcessorPil(
            min_pixels=16 * 16, max_pixels=48 * 48, patch_size=4, merge_size=2, temporal_patch_size=2
        )
        self.image_token = "<|image_pad|>"
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self.with_token_types = with_token_types

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False, **kw):
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False, chat_template=TEMPLATE
        )

    def __call__(self, text, images=None, return_tensors=None, padding=False, **kw):
        text = list(text)
        out = {}
        if images:
            vision = self.image_processor(images=list(images), return_tensors="pt")
            merge = self.image_processor.merge_size**2
            counts = iter(int(g.prod()) // merge for g in vision["image_grid_thw"])
            expanded = []
            for t in text:
                while self.image_token in t:
                    t = t.replace(self.image_token, "<|placeholder|>" * next(counts), 1)
                expanded.append(t.replace("<|placeholder|>", self.image_token))
            text = expanded
            out.update(vision)
        enc = self.tokenizer(text, return_tensors=return_tensors, padding=padding)
        out["input_ids"], out["attention_mask"] = enc["input_ids"], enc["attention_mask"]
        if return_tensors == "pt" and self.with_token_types:
            out["mm_token_type_ids"] = (enc["input_ids"] == self.image_token_id).int()
        return out


def tiny_qwen2_vl(seed: int = 0, layers: int = 4, hidden: int = 64):
    """(model, processor): a random tiny Qwen2VLForConditionalGeneration in float32 eval mode."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    processor = TinyQwenProcessor()
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    scale = hidden // 64  # 4 heads: mrope_section splits half a head's dims (8 at hidden 64) as 2:3:3
    section = [2 * scale, 3 * scale, 3 * scale]
    text = dict(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
    )  # fmt: skip
    vision = dict(depth=1, embed_dim=32, hidden_size=hidden, num_heads=2, patch_size=4, spatial_merge_size=2,
                  mlp_ratio=2)  # fmt: skip
    config = Qwen2VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    processor.with_token_types = (
        "mm_token_type_ids" in inspect.signature(model.model.get_rope_index).parameters
    )
    return model, processor
