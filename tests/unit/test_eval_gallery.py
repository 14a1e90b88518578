"""The docs gallery: a PNG grid of one image under every visual shift, and text examples."""

from __future__ import annotations

from PIL import Image

from vittle_cli.eval.gallery import save_perturbation_grid, text_examples


def test_grid_and_text_examples(tmp_path):
    png = save_perturbation_grid("shapes-shift", tmp_path / "grid.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 600
    examples = text_examples("shapes-shift")
    assert examples[0][0] == "clean" and len(examples) == 10
    assert all(text != examples[0][1] for _, text in examples[1:])
