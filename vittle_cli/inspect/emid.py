"""`vittle inspect emid EVAL_DIR`: EMID and its JSD upper bound for a finished open-ended eval.

Reads the eval folder (results.json for the suite and its variants, predictions.jsonl for the model's
answers), the suite's data (images, questions' reference answers), embeds every (image, query, answer,
reference) with the external encoders of vittle_cli/model/emid_embed.py, fits (or loads) a CLUB estimator
on all variants pooled, and writes emid.json beside results.json. Cached in EVAL_DIR/emid/: one embeddings
file per variant keyed by the encoders and a digest of the answers, and the fitted estimator; a rerun
recomputes only what changed. The math is vittle_cli/model/emid.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from vittle_cli.errors import DataError, UsageError
from vittle_cli.fileio import read_utf8, write_atomic

EMID_FILE = "emid.json"
CACHE_DIR = "emid"
CLUB_FILE = "club.safetensors"
CLUB_INFO = "club.json"
_RESULTS = "results.json"  # eval's results file (vittle_cli.eval.runner.RESULTS; inspect may not import eval)
_PREDICTIONS = "predictions.jsonl"  # eval's answer cache (vittle_cli.eval.predictions.PREDICTIONS)
OPENENDED_SUITES = "suites lbcoco, lbcoco-shift, lbwild, lbwilder, wvbench"


def load_eval_folder(eval_dir: Path, results: dict | None = None):
    """(suite, {(variant, question_id): prediction record}, limit per split) of a finished open-ended eval.

    `results` is the eval's results document when the caller holds it (`vittle eval --emid`, before the
    file is written); otherwise EVAL_DIR/results.json is read.
    """
    from vittle_cli.data.shift.suite import Suite

    results_path = eval_dir / _RESULTS
    if results is None:
        if not results_path.is_file():
            raise UsageError(
                f"{eval_dir} holds no {_RESULTS}: pass the --out folder of a finished `vittle eval`"
            )
        results = json.loads(read_utf8(results_path, "results", DataError))
    if (results.get("task") or {}).get("name") != "openended":
        raise UsageError(
            f"{eval_dir} is not an open-ended (LLM-judged) eval: EMID needs free-form answers and reference "
            f"answers ({OPENENDED_SUITES})"
        )
    s = results["suite"]
    try:
        suite = Suite.model_validate({
            "name": s["name"], "task": "openended", "seed": s["seed"], "data": s["data"],
            "prompt_suffix": results.get("prompt_suffix", ""), "variants": results["variants"],
        })  # fmt: skip
    except (KeyError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        raise DataError(f"{results_path}: cannot rebuild the suite from it ({str(e).splitlines()[0]})") from e
    records = {}
    pred_path = eval_dir / _PREDICTIONS
    for line in (read_utf8(pred_path, "predictions", DataError) if pred_path.is_file() else "").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted eval
        records[(rec["variant"], str(rec["question_id"]))] = rec
    return suite, records, results.get("limit_per_split")


def _clean_variant(suite, against: str | None) -> str:
    names = [v.name for v in suite.variants]
    if against is None:
        clean = [v.name for v in suite.variants if v.group == "clean"]
        if not clean:
            raise UsageError(f"suite {suite.name!r} has no clean variant: pass --against VARIANT")
        return clean[0]
    if against not in names:
        raise UsageError(f"--against {against!r} is not a variant of this eval; variants: {', '.join(names)}")
    return against


def _rows(suite, records, variant, items) -> list[tuple]:
    """(item, query text as the model saw it without the suite suffix, model answer) of a variant."""
    rows = []
    for it in items:
        rec = records.get((variant, it.question_id))
        if rec is None:
            continue
        text = rec["text"]
        if suite.prompt_suffix and text.endswith(suite.prompt_suffix):
            text = text[: -len(suite.prompt_suffix)]
        rows.append((it, text, rec["answer"]))
    return rows


def _digest(encoders: dict, rows) -> str:
    payload = json.dumps([encoders, [(it.question_id, t, a, it.reference) for it, t, a in rows]])
    return hashlib.sha256(payload.encode()).hexdigest()


def embed_variant(suite, data, variant, rows, encoders, cache: Path, cache_dir, batch_size: int):
    """The variant's Embedded, from EVAL_DIR/emid/emb-<variant>.npz when its digest matches."""
    from vittle_cli.data.shift.openended import variant_image
    from vittle_cli.model.emid import Embedded

    path = cache / f"emb-{variant.name}.npz"
    digest = _digest(encoders.names, rows)
    if path.is_file():
        with np.load(path) as z:
            if str(z["digest"]) == digest:
                return Embedded(z["image"], z["query"], z["model"], z["reference"]), False
    images = {}
    for it, _, _ in rows:
        if it.image not in images:
            images[it.image] = encoders.images([variant_image(suite, variant, data, it.image, cache_dir)])[0]
    e = Embedded(
        np.stack([images[it.image] for it, _, _ in rows]),
        encoders.texts([t for _, t, _ in rows], batch_size),
        encoders.texts([a for _, _, a in rows], batch_size),
        encoders.texts([it.reference for it, _, _ in rows], batch_size),
    )
    arrays = {"image": e.image, "query": e.query, "model": e.model, "reference": e.reference}

    def save(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, digest=np.array(digest), **arrays)

    write_atomic(path, save)
    return e, True
