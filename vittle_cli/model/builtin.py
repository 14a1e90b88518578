"""`builtin:tiny-llava` and `builtin:tiny-llava-demo`: small random LLaVAs built from code, with no download.

tiny-llava (16 px patches, an 8-layer LM) is the general test model; tiny-llava-demo (32 px patches, a
2-layer LM) is the one the built-in demo trains, because it learns builtin:shapes within the demo's minutes.

It is built once per (name, seed) into the vittle cache and from then on loaded with the ordinary
`from_pretrained` / `AutoProcessor` path, exactly the path a real hub model takes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from vittle_cli.layout import MODEL_CONFIG

BUILTIN_PREFIX = "builtin:"
TINY_LLAVA = "tiny-llava"
TINY_LLAVA_DEMO = "tiny-llava-demo"
FORMAT_VERSION = 2  # bump when the built model changes so old caches are rebuilt

IMAGE_SIZE = 64
PATCH_SIZE = 16  # tiny-llava's
IMAGE_SEQ_LENGTH = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 16 visual tokens per image (tiny-llava)
# (patch size, LM layers) per built-in model. tiny-llava-demo (issue #18, measured in
# recipes/tiny_stage1.yaml): one 32 px patch per cell of builtin:shapes' 2x2 grid, so each visual token sees
# one whole shape (16 px patches give each a quarter of one); and 2 LM layers, because a shallow LM learns
# the yes/no question logic far sooner from scratch: given the objects directly (an oracle in place of the
# tower) 2 layers answered 81% / 96% of the shapes POPE set after 200 / 400 steps, 8 layers 50% / 81%.
# (With 2 layers the bottleneck's default layer round(0.75 * 2) is capped to the last one.)
VARIANTS = {TINY_LLAVA: (PATCH_SIZE, 8), TINY_LLAVA_DEMO: (32, 2)}
# A wider init than transformers' 0.02 gives the from-scratch model sharper attention from the start; with
# 0.02 it sat at chance on the shapes existence questions for ~900 steps before grounding took off.
INIT_RANGE = 0.1
SYSTEM_PROMPT = "A chat between a curious user and an assistant."

# LLaVA-1.5 layout: the system prompt comes first, so the image sits in the middle of the sequence.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}{{ '" + SYSTEM_PROMPT + " ' }}{% endif %}"
    "{% if message['role'] == 'system' %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}{% for c in message['content'] %}{{ c['text'] + ' ' }}{% endfor %}{% endif %}"
    "{% else %}"
    "{{ message['role'].upper() + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '</s>' }}{% else %}{{ ' ' }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

_COLOURS = "red green blue yellow purple orange white black gray cyan"
_SHAPES = "circle circles square squares triangle triangles star stars cross crosses"
_CORPUS = [
    SYSTEM_PROMPT,
    "USER: ASSISTANT: Yes yes No no not There is there are is a an the of in on image picture",
    "Answer the question using a single word or phrase.",
    "Is there a red circle in the image? How many shapes are there? What colour is the square?",
    "Describe the image briefly. The image shows a blue triangle and two green stars.",
    "What is the capital of France? Paris. Name a colour. Count to three: one two three four five.",
    f"{_COLOURS} {_SHAPES} zero one two three four five six seven eight nine ten",
    "small large big left right top bottom middle corner background shape shapes colour color",
    "Which shape is red? What shapes do you see? I see a cross. There are no stars.",
]


def cache_root() -> Path:
    """Where vittle keeps built-in models and data: $VITTLE_CACHE, else ~/.cache/vittle."""
    env = os.environ.get("VITTLE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vittle"


def is_builtin(name: str) -> bool:
    return name.startswith(BUILTIN_PREFIX)


def builtin_model_names() -> list[str]:
    return [BUILTIN_PREFIX + v for v in VARIANTS]


def resolve_builtin_model(name: str, seed: int = 0) -> Path:
    """Return the directory of a built-in model, building it on first use.

    Raises:
        ModelError: for an unknown built-in name.
    """
    from vittle_cli.errors import ModelError

    short = name[len(BUILTIN_PREFIX) :] if is_builtin(name) else name
    if short not in VARIANTS:
        raise ModelError(f"unknown built-in model {name!r}; known: {', '.join(builtin_model_names())}")
    target = cache_root() / "models" / f"{short}-v{FORMAT_VERSION}-seed{seed}"
    if (target / MODEL_CONFIG).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model, processor = build_tiny_llava(seed, short)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its copy is identical
            if not (target / MODEL_CONFIG).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer trained on a fixed corpus (deterministic, offline)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )


def build_tiny_llava(seed: int = 0, variant: str = TINY_LLAVA):
    """Build (model, processor) for a built-in model: CLIP-style tower + Llama-style LM (VARIANTS).

    Deterministic from `seed`. tiny-llava has about 1M parameters, tiny-llava-demo about 0.6M.
    """
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    patch_size, lm_layers = VARIANTS[variant]
    tokenizer = build_tiny_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=patch_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=64,
        initializer_range=INIT_RANGE,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=lm_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=INIT_RANGE,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=(IMAGE_SIZE // patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        initializer_range=INIT_RANGE,
    )
    config.pad_token_id = tokenizer.pad_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def resolve_model_source(name: str) -> str:
    """Map a recipe's model name to something `from_pretrained` takes: a built-in is built (once) and its
    cache directory returned; hub names and local paths pass through unchanged."""
    return str(resolve_builtin_model(name)) if is_builtin(name) else name
