"""Chat-template rendering: labels are exactly the responses, images stay whole, truncation drops turns."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from vittle_cli.data.render import IGNORE_INDEX, render_conversation
from vittle_cli.data.report import SampleProblem
from vittle_cli.model.builtin import IMAGE_SEQ_LENGTH, IMAGE_SIZE, SYSTEM_PROMPT


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def _user(text, images=0):
    return {"role": "user", "content": [{"type": "image"}] * images + [{"type": "text", "text": text}]}


def _assistant(text):
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _img(colour=(255, 0, 0)):
    return Image.new("RGB", (64, 64), colour)


def _label_runs(sample) -> list[list[int]]:
    """Contiguous runs of labelled positions."""
    pos = (sample["labels"] != IGNORE_INDEX).nonzero().flatten().tolist()
    runs: list[list[int]] = []
    for p in pos:
        if runs and runs[-1][-1] == p - 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _decoded_runs(processor, sample) -> list[str]:
    ids = sample["input_ids"]
    return [processor.tokenizer.decode(ids[r]) for r in _label_runs(sample)]


MULTI_TURN = [
    _user("Is there a red circle in the image?", images=1),
    _assistant("Yes"),
    _user("How many shapes are there?"),
    _assistant("2"),
    _user("Describe the image briefly."),
    _assistant("The image shows a red circle and a blue star."),
]


def test_labels_are_exactly_the_responses_multi_turn(processor):
    sample = render_conversation(processor, MULTI_TURN, [_img()], max_length=512).tensors
    ids, labels = sample["input_ids"], sample["labels"]
    assert ids.dim() == 1 and labels.shape == ids.shape
    mask = labels != IGNORE_INDEX
    assert torch.equal(labels[mask], ids[mask])
    assert _decoded_runs(processor, sample) == [
        " Yes</s>",
        " 2</s>",
        " The image shows a red circle and a blue star.</s>",
    ]
    # nothing but the responses: the unlabelled text holds every question and no answer
    rest = processor.tokenizer.decode(ids[~mask])
    assert "Is there a red circle" in rest and "How many shapes" in rest and "Yes" not in rest


def test_image_sits_after_the_system_prompt_as_one_whole_span(processor):
    sample = render_conversation(processor, MULTI_TURN[:2], [_img()], max_length=512).tensors
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    where = (sample["input_ids"] == image_id).nonzero().flatten()
    assert len(where) == IMAGE_SEQ_LENGTH
    assert where[-1] - where[0] + 1 == IMAGE_SEQ_LENGTH  # contiguous
    before = processor.tokenizer.decode(sample["input_ids"][: where[0]])
    assert before.startswith(SYSTEM_PROMPT) and before.rstrip().endswith("USER:")
    assert (sample["labels"][where] == IGNORE_INDEX).all()
    assert sample["pixel_values"].shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)


def test_text_only_sample_has_no_pixel_values(processor):
    sample = render_conversation(processor, [_user("Is red a colour?"), _assistant("Yes")], [], 512).tensors
    assert set(sample) == {"input_ids", "labels"}
    assert _decoded_runs(processor, sample) == [" Yes</s>"]


def test_truncation_drops_whole_trailing_turns_and_their_images(processor):
    conv = [
        _user("Is there a red circle in the image?", images=1),
        _assistant("Yes"),
        _user("And in this one?", images=1),
        _assistant("No"),
    ]
    images = [_img(), _img((0, 0, 255))]
    full = render_conversation(processor, conv, images, max_length=512)
    first = render_conversation(processor, conv[:2], images[:1], max_length=512)
    assert not full.truncated and full.tensors["pixel_values"].shape[0] == 2
    cut = render_conversation(processor, conv, images, max_length=len(first.tensors["input_ids"]) + 5)
    assert cut.truncated
    assert torch.equal(cut.tensors["input_ids"], first.tensors["input_ids"])
    assert torch.equal(cut.tensors["labels"], first.tensors["labels"])
    assert cut.tensors["pixel_values"].shape[0] == 1


def test_no_max_length_cuts_through_an_image_span(processor):
    conv = MULTI_TURN[:4] + [_user("And this one?", images=1), _assistant("No")]
    images = [_img(), _img((0, 255, 0))]
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    full_len = len(render_conversation(processor, conv, images, 10_000).tensors["input_ids"])
    outcomes = set()
    for max_length in range(20, full_len + 2, 3):
        try:
            r = render_conversation(processor, conv, images, max_length)
        except SampleProblem as p:
            assert p.kind == "too_long"
            outcomes.add("too_long")
            continue
        ids = r.tensors["input_ids"]
        n_image_tokens = int((ids == image_id).sum())
        assert len(ids) <= max_length
        assert n_image_tokens == IMAGE_SEQ_LENGTH * r.tensors["pixel_values"].shape[0]
        assert (r.tensors["labels"] != IGNORE_INDEX).any()
        outcomes.add(("truncated", r.tensors["pixel_values"].shape[0]) if r.truncated else "full")
    assert outcomes == {"too_long", ("truncated", 1), "full"}


def test_first_turn_longer_than_max_length_is_too_long(processor):
    with pytest.raises(SampleProblem) as info:
        render_conversation(processor, MULTI_TURN, [_img()], max_length=IMAGE_SEQ_LENGTH)
    assert info.value.kind == "too_long"


CHATML = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def test_labels_follow_any_template_that_extends_its_generation_prompt(processor):
    other = copy.deepcopy(processor)
    other.chat_template = CHATML
    sample = render_conversation(other, MULTI_TURN, [_img()], max_length=512).tensors
    runs = _decoded_runs(other, sample)
    assert [r.replace(" ", "") for r in runs] == [
        "Yes<|end|>\n",
        "2<|end|>\n",
        "Theimageshowsaredcircleandabluestar.<|end|>\n",
    ]


def test_template_whose_prompt_names_the_answer_otherwise_trains_after_the_prompt(processor, caplog):
    """Asked with 'ANSWER:' but rendering answers after 'ASSISTANT:': the answers are trained after what
    inference asks with, and the mismatch is logged."""
    other = copy.deepcopy(processor)
    other.chat_template = processor.chat_template.replace(
        "'ASSISTANT:' }}{% endif %}", "'ANSWER:' }}{% endif %}"
    )
    assert other.chat_template != processor.chat_template
    with caplog.at_level("WARNING", logger="vittle_cli.data.render"):
        sample = render_conversation(other, MULTI_TURN, [_img()], max_length=512).tensors
    text = processor.tokenizer.decode(sample["input_ids"])
    assert "ASSISTANT:" not in text and text.count("ANSWER:") == 3
    assert "opens an answer with 'ASSISTANT: ' but asks for one with 'ANSWER:'" in caplog.text


IM_CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.mark.parametrize("template", ["tiny", "chatml"])
def test_one_render_and_a_search_find_the_same_responses_as_rendering_every_prefix(template, processor):
    from vittle_cli.data.render import _exact_spans, _response_wrapper, _searched_spans, template_text

    proc = processor if template == "tiny" else copy.deepcopy(processor)
    if template == "chatml":
        proc.chat_template = IM_CHATML
    wrapper = _response_wrapper(proc)
    assert wrapper is not None  # the fast path is on for both templates
    tricky = [
        _user("Say Yes", images=1), _assistant("Yes"), _user("Yes or no? Yes"), _assistant("Yes"),
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, _user("2"), _assistant("2"),
    ]  # fmt: skip
    for messages in (MULTI_TURN, tricky, MULTI_TURN * 5):
        full = template_text(proc, messages)
        assert _searched_spans(messages, full, wrapper) == _exact_spans(proc, messages, full)[1]


def test_a_template_the_probe_cannot_verify_falls_back_to_the_exact_method(processor):
    from vittle_cli.data.render import _response_wrapper

    odd = copy.deepcopy(processor)
    # responses rendered upper-cased: the probe text is not found, so no search is trusted
    odd.chat_template = IM_CHATML.replace("{{ c['text'] }}", "{{ c['text'] | upper }}")
    assert _response_wrapper(odd) is None
    sample = render_conversation(odd, MULTI_TURN[:2], [_img()], 512).tensors
    assert processor.tokenizer.decode(sample["input_ids"][sample["labels"] != IGNORE_INDEX]).startswith("YES")


def test_an_answer_the_template_opens_differently_is_trained_after_the_generation_prompt(processor):
    """llava-hf's llava-onevision-qwen2-0.5b-ov-hf template renders an answer as "assistant \n" + text but asks
    for one with "assistant\n": the answer must be trained after what inference asks with, labels on the
    answer and the turn's end only, in every turn."""
    from vittle_cli.data.render import _response_wrapper

    reopened = copy.deepcopy(processor)
    reopened.chat_template = IM_CHATML.replace("message['role'] + '\n'", "message['role'] + ' '").replace(
        "{{ c['text'] }}", "{{ '\n' + c['text'] }}"
    )
    asked = reopened.apply_chat_template(MULTI_TURN[:1], tokenize=False, add_generation_prompt=True)
    assert asked.endswith("<|im_start|>assistant\n")
    assert "assistant \nYes" in reopened.apply_chat_template(MULTI_TURN[:2], tokenize=False)
    assert _response_wrapper(reopened) is None  # no fixed wrapper: the exact method rewrites the opener
    sample = render_conversation(reopened, MULTI_TURN, [_img()], 1024).tensors
    tok = processor.tokenizer
    text = tok.decode(sample["input_ids"])
    assert "assistant \n" not in text and text.count("<|im_start|>assistant\n") == 3
    runs = _label_runs(sample)
    answers = [m["content"][0]["text"] for m in MULTI_TURN if m["role"] == "assistant"]
    assert [tok.decode(sample["input_ids"][r]) for r in runs] == [f"{a}<|im_end|>\n" for a in answers]
    first = runs[0][0]
    assert tok.decode(sample["input_ids"][:first]).endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_a_generation_prompt_longer_than_a_short_answer_turn_is_mended_too(processor):
    """Thinking-style prompts ("assistant\n<think>\n\n</think>\n\n") can be longer than a rendered answer turn."""
    thinking = copy.deepcopy(processor)
    thinking.chat_template = IM_CHATML.replace(
        "{{ '<|im_start|>assistant\n' }}{% endif %}",
        "{{ '<|im_start|>assistant\n<think>\n\n</think>\n\n' }}{% endif %}",
    )
    sample = render_conversation(thinking, MULTI_TURN[:4], [_img()], 1024).tensors
    tok = processor.tokenizer
    assert tok.decode(sample["input_ids"]).count("<|im_start|>assistant\n<think>\n\n</think>\n\n") == 2
    assert [tok.decode(sample["input_ids"][r]) for r in _label_runs(sample)] == [
        "Yes<|im_end|>\n",
        "2<|im_end|>\n",
    ]


def test_a_generation_prompt_that_differs_before_the_answer_turn_is_still_refused(processor):
    odd = copy.deepcopy(processor)
    # text only the generation prompt writes, at the very start: not an opener of the answer, nothing rewritten
    odd.chat_template = "{% if add_generation_prompt %}{{ 'Asked: ' }}{% endif %}" + IM_CHATML
    with pytest.raises(SampleProblem, match="generation prompt is not a prefix"):
        render_conversation(odd, MULTI_TURN[:2], [_img()], 512)


def test_open_responses_are_closed_with_eos_and_closed_ones_kept():
    """llava-hf's LLaVA-1.5 template writes 'ASSISTANT: Yes ' with no end-of-turn token: the label must end
    with EOS (LLaVA trains on 'answer</s>'), or the model never learns to stop. A template that writes its
    own end of turn after the answer is left alone."""
    from vittle_cli.data.render import close_responses

    full = "USER: Q1 ASSISTANT: Yes USER: Q2 ASSISTANT: No "
    spans = [(1, 20, 24), (3, 44, 47)]
    assert [full[lo:hi] for _, lo, hi in spans] == ["Yes ", "No "]
    text, closed = close_responses(full, spans, ["Yes", "No"], "</s>")
    assert text == "USER: Q1 ASSISTANT: Yes</s> USER: Q2 ASSISTANT: No</s> "
    assert [text[lo:hi] for _, lo, hi in closed] == ["Yes</s>", "No</s>"]
    qwen = "<|im_start|>assistant\nYes<|im_end|>\n"
    assert close_responses(qwen, [(1, 22, len(qwen))], ["Yes"], "<|endoftext|>") == (
        qwen,
        [(1, 22, len(qwen))],
    )
