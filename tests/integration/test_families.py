"""Every supported family, end to end, with its published tokenizer, processor, chat template and config.

The models are random and small (tests/fixtures/models/build.py shrinks only the sizes in the published
config.json); everything a real checkpoint brings besides the weights is the published file. Per family:
a training sample renders with labels on the answer only and as many image tokens as the processor makes
(golden snapshot of the prompt), the bottleneck's visual mask is exactly the image tokens, and the CLI
trains 2 steps (LoRA), saves, merges; the merged model reloads, answers POPE-form questions through the
eval fast path exactly as one generate() per question does, and generates once. A wrong chat template or
image-token id in a copy of the fixture fails the same checks.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from PIL import Image

from vittle_cli.data.render import IGNORE_INDEX, render_conversation
from vittle_cli.data.report import SampleProblem
from vittle_cli.errors import ModelError
from vittle_cli.model import families
from vittle_cli.model.prompt import render_query_prompt

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
_spec = importlib.util.spec_from_file_location("family_fixtures", FIXTURES / "build.py")
fixture_builder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixture_builder)

QUESTION = "Is there a red circle in the image?\nAnswer the question using a single word or phrase."
# What each family's processor must make of one 64x64 image and one answer, derived by hand from the
# published files: LLaVA-1.5 resizes + crops to 336 with 14-px patches -> 24 x 24 = 576 tokens (CLS
# dropped); Qwen2-VL's smart resize takes 64 px to 56 px -> 4 x 4 patches, 2 x 2 merged -> 4 tokens.
EXPECTED = {
    "llava15": {"family": "LLaVA-1.5", "image_token_id": 32000, "image_tokens": 576, "labelled": "Yes</s>"},
    # anyres: 64x64 picks the 336x672 grid -> 576 base tokens + the 24x48 grid unpadded to 24x24 (576)
    # + one newline token per row (24) = 1176
    "llava_next": {
        "family": "LLaVA-NeXT",
        "image_token_id": 32000,
        "image_tokens": 1176,
        "labelled": "Yes</s>",
    },
    # the LLaMA-3-8B LLaVA-NeXT: the same anyres processor settings as llava_next, Llama 3's tokenizer
    "llama3_llava_next": {
        "family": "LLaVA-NeXT",
        "image_token_id": 128256,
        "image_tokens": 1176,
        "labelled": "Yes<|eot_id|>",
    },
    # longest edge 64 -> 2048 (the processor's size), split into 4 x 4 tiles of 512 + 1 global view,
    # 64 tokens each (image_seq_len) = 17 x 64 = 1088
    "idefics3": {
        "family": "Idefics3 / SmolVLM",
        "image_token_id": 49190,
        "image_tokens": 1088,
        "labelled": "Yes<end_of_utterance>",
    },
    # anyres_max_9: 64x64 picks the 384x384 grid -> 729 base tokens + the 27x27 tile (square, nothing
    # unpadded) + one newline token per row (27) = 1485
    "llava_onevision": {
        "family": "LLaVA-OneVision",
        "image_token_id": 151646,
        "image_tokens": 1485,
        "labelled": "Yes<|im_end|>",
    },
    "qwen2_vl": {
        "family": "Qwen2-VL",
        "image_token_id": 151655,
        "image_tokens": 4,
        "labelled": "Yes<|im_end|>",
    },
    "qwen2_5_vl": {
        "family": "Qwen2.5-VL",
        "image_token_id": 151655,
        "image_tokens": 4,
        "labelled": "Yes<|im_end|>",
    },
}


@pytest.fixture(scope="module", params=fixture_builder.FAMILIES)
def family_dir(request, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    return name, fixture_builder.build(name, tmp_path_factory.mktemp(name) / "model")


def _image(colour: str = "red") -> Image.Image:
    return Image.new("RGB", (64, 64), colour)


def _messages(answer: str = "Yes") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def check_rendering(name: str, folder: Path) -> str:
    """Render one training sample as vittle does and check it against what the family must give; returns
    the golden snapshot text."""
    from transformers import AutoConfig

    expected = EXPECTED[name]
    processor = families.load_processor(str(folder))
    config = AutoConfig.from_pretrained(folder)
    processor_token = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    assert processor_token == expected["image_token_id"], f"the processor's image token is {processor_token}"
    assert config.image_token_id == processor_token, "the config's image token id is not the processor's"
    tensors = render_conversation(processor, _messages(), [_image()], max_length=4096).tensors
    ids, labels = tensors["input_ids"], tensors["labels"]
    at = (ids == config.image_token_id).nonzero().flatten().tolist()
    assert len(at) == expected["image_tokens"], f"{len(at)} image tokens, expected {expected['image_tokens']}"
    # one image span: image tokens, and (Idefics3's tiles) added marker tokens and row newlines between them
    added = set(processor.tokenizer.get_added_vocab().values())
    between = [t for t in ids[at[0] : at[-1] + 1].tolist() if t not in added]
    assert processor.tokenizer.decode(between).strip() == "", "text inside the image span"
    labelled = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
    decoded = processor.tokenizer.decode(ids[labelled], skip_special_tokens=False)
    assert decoded.strip() == expected["labelled"], f"labels decode to {decoded!r}"
    assert labelled[0] > at[-1] and labelled == list(range(labelled[0], labelled[-1] + 1))
    prompt = render_query_prompt(processor, QUESTION)  # the one prompt eval / inspect / merge ask with
    assert prompt == processor.apply_chat_template(
        _messages()[:1], tokenize=False, add_generation_prompt=True
    )
    # what vittle trains on, decoded from its input_ids (each run of image tokens shown once)
    runs = [t for i, t in enumerate(ids.tolist()) if i == 0 or t != config.image_token_id or ids[i - 1] != t]
    sample = processor.tokenizer.decode(runs, skip_special_tokens=False)
    return (
        f"# generation prompt\n{prompt}\n# training sample (input_ids decoded, one token per image run)\n{sample}\n"
        f"# {len(ids)} tokens; image tokens {at[0]}..{at[-1]} (id {config.image_token_id}); "
        f"labelled {labelled[0]}..{labelled[-1]}: {decoded!r}\n"
    )


def test_published_files_render_as_the_family_must(family_dir):
    """Labels on the answer only, image tokens where and how many the processor makes, prompt pinned."""
    name, folder = family_dir
    snapshot = check_rendering(name, folder)
    golden = FIXTURES / "golden" / f"{name}.txt"
    if os.environ.get("VITTLE_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(snapshot)
    assert golden.is_file(), "golden file missing: run once with VITTLE_UPDATE_GOLDEN=1"
    assert snapshot == golden.read_text()


# (old, new) inside the chat template string, per family ("qwen" for both Qwen families).
_LLAVA = {
    "generation_prompt": ("'ASSISTANT:'", "'Assistant:'"),
    "layout": ("'<image>\n'", "'<image> '"),
}
_QWEN = {
    "generation_prompt": ("<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant {% endif %}"),
    "layout": ("You are a helpful assistant.", "You are a helpful assistant!"),
}
# family -> mutation -> (old, new) inside the chat template string. "generation_prompt": the prompt no
# longer matches how an answered turn starts: answers are then trained after the prompt's opener (render.py
# _reopened), which the golden snapshot sees, or cannot be located at all where the new opener runs into the
# answer's first token; "layout": a prompt that still renders consistently, but not as the family's, which
# only the golden snapshot sees.
TEMPLATE_MUTATIONS = {
    "llava15": _LLAVA,
    "llava_next": _LLAVA,
    "qwen2_vl": _QWEN,
    "qwen2_5_vl": _QWEN,
    "llama3_llava_next": {
        "generation_prompt": ("'<|start_header_id|>assistant<", "'<|start_header_id|>Assistant<"),
        "layout": ("{{ '<image>' }}", "{{ '<image> ' }}"),
    },
    "llava_onevision": {
        "generation_prompt": ("{{ '<|im_start|>assistant\n' }}", "{{ '<|im_start|>assistant ' }}"),
        "layout": ("{{ '<image>' }}", "{{ '<image> ' }}"),
    },
    "idefics3": {
        "generation_prompt": ("{{ 'Assistant:' }}", "{{ 'Assistant :' }}"),
        "layout": ("{{':'}}{% else %}", "{{' :'}}{% else %}"),
    },
}


def _edit_template(folder: Path, old: str, new: str) -> None:
    for path in folder.glob("chat_template.*"):  # .json (escaped string) and .jinja (plain text)
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            assert old in data["chat_template"], f"{path.name} lacks {old!r}"
            data["chat_template"] = data["chat_template"].replace(old, new)
            path.write_text(json.dumps(data))
        else:
            assert old in path.read_text(), f"{path.name} lacks {old!r}"
            path.write_text(path.read_text().replace(old, new))


def _mutated_copy(folder: Path, dest: Path, name: str, what: str) -> Path:
    shutil.copytree(folder, dest)
    if what in TEMPLATE_MUTATIONS[name]:
        _edit_template(dest, *TEMPLATE_MUTATIONS[name][what])
    else:  # the config names a neighbouring token as the image token
        config = json.loads((dest / "config.json").read_text())
        key = "image_token_index" if "image_token_index" in config else "image_token_id"
        config[key] += 1
        (dest / "config.json").write_text(json.dumps(config))
    return dest


@pytest.mark.parametrize(
    ("what", "failure"),
    [
        ("generation_prompt", ("response_not_located", "golden")),
        ("layout", ("golden",)),
        ("image_token_id", ("image token id is not the processor's",)),
    ],
)
def test_a_wrong_template_or_image_token_id_fails_the_family_checks(family_dir, tmp_path, what, failure):
    name, folder = family_dir
    golden = (FIXTURES / "golden" / f"{name}.txt").read_text()
    assert check_rendering(name, folder) == golden  # the unbroken copy passes
    broken = _mutated_copy(folder, tmp_path / "broken", name, what)
    with pytest.raises((AssertionError, SampleProblem)) as info:
        assert check_rendering(name, broken) == golden, "golden"
    assert any(f in str(info.value) for f in failure), str(info.value)


def test_visual_mask_is_exactly_the_image_tokens(family_dir):
    from transformers import AutoModelForImageTextToText

    from vittle_cli.model.attach import attach_bottleneck, get_bottleneck
    from vittle_cli.model.bottleneck import VittleConfig

    name, folder = family_dir
    processor = families.load_processor(str(folder))
    # train mode: the bottleneck records the mask it applied only while training
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).train()
    assert families.require_supported(model).name == EXPECTED[name]["family"]
    attach_bottleneck(model, VittleConfig(prior="F", layer_v=1, layer_t=2))
    tensors = render_conversation(processor, _messages(), [_image()], max_length=4096).tensors
    batch, out = fixture_builder.forward_rendered(model, tensors)
    assert math.isfinite(float(out.loss))
    mask = get_bottleneck(model).last_visual_mask
    assert torch.equal(mask, batch["input_ids"] == EXPECTED[name]["image_token_id"])
    assert int(mask.sum()) == EXPECTED[name]["image_tokens"]


@pytest.mark.slow
def test_train_save_merge_reload_eval_and_generate(family_dir, tmp_path):
    from vittle_cli.eval.generate import GenerationRequest, generate_answers, generate_one_at_a_time
    from vittle_cli.model.checkpoint import load_vittle_model

    name, folder = family_dir
    code = run_cli(
        [
            "train",
            "recipes/tiny.yaml",
            f"model.name={folder}",
            "model.train_vision_tower=false",
            "train.lora.enabled=true",
            "train.max_steps=2",
            "train.per_device_batch_size=2",
            "train.logging_steps=1",
            "data.limit=4",
            "data.max_length=2048",
            "bottleneck.layer_v=1",
            "bottleneck.layer_t=2",
            f"output.dir={tmp_path}",
            "output.run_name=run",
            "output.save_steps=2",
            "output.report_to=[]",
        ]
    )
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in rows if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(r["loss"]) for r in losses)
    assert all(r["kl_v"] > 0 for r in losses), "the visual bottleneck saw no image tokens"

    assert run_cli(["merge", str(tmp_path / "run" / "final"), "--out", str(tmp_path / "merged")]) == 0
    model, processor = load_vittle_model(str(tmp_path / "merged"))
    assert families.require_supported(model).name == EXPECTED[name]["family"]
    requests = [
        GenerationRequest(_image(colour), f"Is there a {shape} in the image?", group=colour)
        for colour in ("red", "blue")
        for shape in ("circle", "square")
    ]
    fast = generate_answers(model, processor, requests, batch_size=4, max_new_tokens=3)
    assert fast == generate_one_at_a_time(model, processor, requests, max_new_tokens=3)

    prompt = processor.apply_chat_template(_messages()[:1], add_generation_prompt=True)
    inputs = processor(text=[prompt], images=[_image()], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1], "generate() produced nothing"


def test_the_llama3_tokenizer_built_from_metas_ranks_encodes_as_meta_does(tmp_path):
    """tokenizer.json is derived from Meta's tokenizer.model (build.py); these ids are the ones Meta's own
    tokenizer tests expect (meta-llama/llama-models, models/llama3/tests/api/test_tokenizer.py)."""
    from transformers import AutoTokenizer

    folder = fixture_builder.lay_out_files("llama3_llava_next", tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = [128000, 2028, 374, 264, 1296, 11914, 13]
    assert tokenizer("This is a test sentence.")["input_ids"] == ids
    assert tokenizer.decode([*ids, 128001]) == "<|begin_of_text|>This is a test sentence.<|end_of_text|>"
    assert tokenizer.encode("user", add_special_tokens=False) == [882]
    assert tokenizer.encode("\n\n", add_special_tokens=False) == [271]
    assert tokenizer.convert_tokens_to_ids(["<|eot_id|>", "<image>", "<pad>"]) == [128009, 128256, 128257]


def test_llava_next_tokenizer_has_its_own_tokens_and_the_tokenizer_template_does_not_win(tmp_path):
    """LLaVA-NeXT (vicuna) adds only <image> to the Llama 2 vocabulary and pads with <unk> (its
    tokenizer_config.json); the LLaMA-3 one's tokenizer_config.json carries Llama-3-Instruct's own chat
    template, which must lose to the processor's chat_template.json (it has no image placeholder)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(fixture_builder.lay_out_files("llava_next", tmp_path / "next"))
    assert len(tokenizer) == 32001 and tokenizer.convert_tokens_to_ids("<image>") == 32000
    assert tokenizer.pad_token == "<unk>"
    assert "<pad>" not in tokenizer.get_vocab()
    folder = fixture_builder.lay_out_files("llama3_llava_next", tmp_path / "llama3")
    processor = families.load_processor(str(folder))
    assert "<image>" not in processor.tokenizer.chat_template
    assert processor.chat_template == json.loads((folder / "chat_template.json").read_text())["chat_template"]
    assert "<image>" in render_query_prompt(processor, QUESTION)


def test_qwen2_5_vl_tokenizer_has_its_own_added_tokens(tmp_path):
    """Qwen2.5-VL's tokenizer_config.json adds 8 tokens (not special) after Qwen2-VL's 14; the vision ids stay."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(fixture_builder.lay_out_files("qwen2_5_vl", tmp_path / "tok"))
    assert len(tokenizer) == 151665
    assert tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<tool_call>", "<|file_sep|>"]) == [
        151655,
        151657,
        151664,
    ]
    assert tokenizer.decode([151657], skip_special_tokens=True) == "<tool_call>"  # not a special token


def test_an_image_only_onevision_processor_keeps_its_token_settings_through_save(tmp_path):
    """Without torchvision LLaVA-OneVision's processor is built image-only; its num_image_tokens and feature
    strategy (processor_config.json) decide the image-token count and must survive save -> reload, as the
    train -> merge -> eval chain does."""
    folder = fixture_builder.lay_out_files("llava_onevision", tmp_path / "published")
    processor = families.load_processor(str(folder))
    processor.save_pretrained(tmp_path / "saved")
    for loaded in (processor, families.load_processor(str(tmp_path / "saved"))):
        assert (loaded.num_image_tokens, loaded.vision_feature_select_strategy) == (729, "full")
        ids = loaded(text=["<image>"], images=[_image()], return_tensors="pt")["input_ids"]
        assert int((ids == 151646).sum()) == EXPECTED["llava_onevision"]["image_tokens"]


def test_an_unsupported_family_is_refused_naming_the_tested_ones(tmp_path):
    from transformers import PaliGemmaConfig

    with pytest.raises(
        ModelError, match="LLaVA-1.5, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Idefics3 / SmolVLM, LLaVA-OneVision"
    ):
        families.require_supported(PaliGemmaConfig())


def test_the_support_list_is_exactly_the_tested_families(capsys):
    assert sorted(f.name for f in families.FAMILIES) == sorted({e["family"] for e in EXPECTED.values()})
    assert run_cli(["env"]) == 0
    out = capsys.readouterr().out
    for family in families.FAMILIES:
        assert f"  {family.name}: tested with {family.tested_with}" in out
