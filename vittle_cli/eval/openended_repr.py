"""Internal representation shift per variant for the LLM-judged suites.

For each shifted variant: the matrix-based JSD (vittle_cli.model.repr_metrics) between the clean and the
shifted prompts' hidden states at the bottleneck layer (for a model without a bottleneck, the layer
`inspect embeddings` uses by default), mean-pooled per sample over the visual and over the text tokens, the
"after" states `inspect embeddings` reports. Cached per variant in representation_shift.json in the eval
folder (whose fingerprint fixes the model), so a rerun needs no model.
"""

from __future__ import annotations

import json
from pathlib import Path

from vittle_cli.fileio import write_json

REPR_FILE = "representation_shift.json"


class LazyModel:
    """Load (model, processor) on first use only: a rerun over complete caches never loads it."""

    def __init__(self, load_model, name: str, base, dtype: str, device: str, console):
        self.args = (load_model, name, base, dtype, device, console)
        self.loaded = None

    def get(self):
        if self.loaded is None:
            load_model, name, base, dtype, device, console = self.args
            if load_model is None:
                from vittle_cli.model.checkpoint import load_vittle_model as load_model
            console.print(f"loading {name} ({dtype}, {device})")
            self.loaded = load_model(name, base=base, dtype=dtype, device=device)
        return self.loaded


def representation_shift(
    suite, data, items, handle: LazyModel, out: Path, batch_size: int, cache_dir
) -> dict:
    """{variant: {"visual": jsd, "text": jsd, "n": samples, "layers": {...}}} for every shifted variant."""
    from vittle_cli.data.shift.openended import variant_questions

    path = Path(out) / REPR_FILE
    ids = [it.question_id for it in items]
    done = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if done.get("question_ids") != ids:
        done = {"question_ids": ids, "variants": {}}
    clean = next((v for v in suite.variants if v.group == "clean"), None)
    todo = [v for v in suite.variants if v.group != "clean" and v.name not in done["variants"]]
    if clean is None or not todo:
        return done["variants"]
    from vittle_cli.model.capture import Query, capture_layers, pooled_states
    from vittle_cli.model.repr_metrics import matrix_jsd

    model, processor = handle.get()
    layers, active = capture_layers(model, None)

    def pooled(variant):
        rows = {
            it.question_id: (img, text)
            for it, img, text in variant_questions(suite, variant, data, items, cache_dir)
        }
        queries = [Query(q, *rows[q]) for q in ids]
        return pooled_states(model, processor, queries, layers, active, batch_size)

    base = pooled(clean)
    for v in todo:
        shifted = pooled(v)
        entry = {"n": len(ids), "layers": layers}
        for modality in ("visual", "text"):
            a, b = base[(modality, "after")], shifted[(modality, "after")]
            keep = ~(_nan_rows(a) | _nan_rows(b))
            entry[modality] = matrix_jsd(a[keep], b[keep]) if keep.sum() > 1 else None
        done["variants"][v.name] = entry
        write_json(path, done)  # after each variant: an interrupted run keeps what it measured
    return done["variants"]


def _nan_rows(x):
    import numpy as np

    return np.isnan(x).any(axis=1)
