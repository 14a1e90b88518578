"""Tiny random EMID encoders built in code (nothing downloaded): a CLIP vision tower and an XLM-RoBERTa text
model of width DIM with their processors, saved as folders that `--vision-encoder` / `--text-encoder` load."""

from __future__ import annotations

from pathlib import Path

DIM = 16


def build_tiny_encoders(root: Path) -> tuple[str, str]:
    """(vision folder, text folder) under `root`."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    from vittle_cli.model.builtin import build_tiny_tokenizer

    torch.manual_seed(0)
    vcfg = CLIPVisionConfig(hidden_size=DIM, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                            image_size=32, patch_size=8)  # fmt: skip
    CLIPVisionModel(vcfg).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        root / "clip"
    )
    tok = build_tiny_tokenizer()
    tcfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=DIM, intermediate_size=32, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=600, pad_token_id=tok.pad_token_id)  # fmt: skip
    XLMRobertaModel(tcfg).save_pretrained(root / "xlmr")
    tok.save_pretrained(root / "xlmr")
    return str(root / "clip"), str(root / "xlmr")
