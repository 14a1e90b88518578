"""A picture of a suite's shifts: one image under every visual variant, and its question under every
text variant (for docs/evaluation.md).

    python -m vittle_cli.eval.gallery shapes-shift docs/images/perturbations.png
"""

from __future__ import annotations

import sys
from pathlib import Path

from vittle_cli.data.shift import load_suite, suite_questions
from vittle_cli.fileio import save_figure


def text_examples(suite_name: str, question_index: int = 0) -> list[tuple[str, str]]:
    """(variant, perturbed question without the suffix) for the clean and text variants."""
    suite = load_suite(suite_name)
    out = []
    for v in suite.variants:
        if v.group in ("clean", "text"):
            q = suite_questions(suite, v, limit_per_split=question_index + 1)[question_index]
            out.append((v.name, q.text.removesuffix(suite.prompt_suffix)))
    return out


def save_perturbation_grid(suite_name: str, out_png: Path, *, image_index: int = 0, scale: int = 3) -> Path:
    """Save a grid of one image of the suite, clean and under each visual variant, upscaled for viewing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    suite = load_suite(suite_name)
    shown = [v for v in suite.variants if v.group in ("clean", "visual")]
    cols = 5
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.0, rows * 2.2))
    for ax in axes.flat:
        ax.axis("off")
    for ax, v in zip(axes.flat, shown, strict=False):
        q = suite_questions(suite, v, limit_per_split=image_index + 1)[image_index]
        w, h = q.image.size
        ax.imshow(q.image.resize((w * scale, h * scale), Image.NEAREST))
        ax.set_title(v.name, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_png)


if __name__ == "__main__":
    suite_arg, out_arg = (
        sys.argv[1:3] + ["shapes-shift", "docs/images/perturbations.png"][len(sys.argv[1:3]) :]
    )
    print(save_perturbation_grid(suite_arg, Path(out_arg)))
    for name, text in text_examples(suite_arg):
        print(f"| {name} | {text} |")
