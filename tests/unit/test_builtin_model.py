import torch
from PIL import Image

from vittle_cli.model.builtin import IMAGE_SEQ_LENGTH, build_tiny_llava


def _chat(processor, question="Is there a red circle in the image?", answer="Yes"):
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    return processor.apply_chat_template(msgs)


def test_save_from_pretrained_forward_gives_finite_loss(tiny_llava):
    model, processor = tiny_llava
    text = _chat(processor)
    enc = processor(images=Image.new("RGB", (64, 64), (255, 0, 0)), text=text, return_tensors="pt")
    n_image = int((enc["input_ids"] == model.config.image_token_id).sum())
    assert n_image == IMAGE_SEQ_LENGTH
    # the system prompt comes first: the image sits in the middle of the sequence
    first_image = int((enc["input_ids"][0] == model.config.image_token_id).nonzero()[0])
    assert first_image > 5
    out = model(**enc, labels=enc["input_ids"])
    assert torch.isfinite(out.loss) and out.loss.item() > 0


def test_build_is_deterministic_from_seed():
    a, _ = build_tiny_llava(seed=3)
    b, _ = build_tiny_llava(seed=3)
    c, _ = build_tiny_llava(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
