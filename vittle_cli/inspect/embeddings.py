"""`vittle inspect embeddings`: how far shifted queries move the representation at the bottleneck layer.

For every variant of a suite, the same questions (paired by question_id with the clean ones) are encoded;
per question the hidden states at the bottleneck layer are mean-pooled over visual and over text tokens,
before and after the bottleneck. Per variant we report the mean paired cosine distance and the matrix-based
JSD (metrics.py) between the clean and shifted sets (the paper's Fig. 1b and JSD table).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vittle_cli.errors import UsageError
from vittle_cli.model.capture import MODALITIES, STAGES, Query
from vittle_cli.model.repr_metrics import matrix_jsd, mean_cosine_distance

ARRAYS_FILE = "embeddings.safetensors"
MANIFEST_FILE = "manifest.json"
TAGS = ("model", "compare")


@dataclass
class VariantMetric:
    """Clean-vs-shifted distance of one variant, one modality, one stage, for one model."""

    model: str  # "model" | "compare"
    variant: str
    group: str
    modality: str
    stage: str
    cosine_distance: float | None
    jsd: float | None
    n: int


@dataclass
class EmbeddingsReport:
    out: str
    suite: str
    models: list[dict]
    variants: list[dict]
    question_ids: list[str]
    metrics: list[VariantMetric] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    def lookup(self, tag: str, variant: str, modality: str, stage: str) -> VariantMetric | None:
        for m in self.metrics:
            if (m.model, m.variant, m.modality, m.stage) == (tag, variant, modality, stage):
                return m
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text.strip("/")).strip("-") or "model"


def _pair_metrics(clean: np.ndarray, shifted: np.ndarray) -> tuple[float | None, float | None, int]:
    """(mean cosine distance, JSD, n) over the pairs where both rows exist (finite)."""
    keep = np.isfinite(clean).all(axis=1) & np.isfinite(shifted).all(axis=1)
    n = int(keep.sum())
    if n < 2:
        return None, None, n
    return mean_cosine_distance(clean[keep], shifted[keep]), matrix_jsd(clean[keep], shifted[keep]), n


def _load_models(
    model: str, compare: str | None, base: str | None, dtype: str, device: str, layer: int | None
):
    from vittle_cli.inspect.loading import load_for_inspect
    from vittle_cli.model.capture import capture_layers

    loaded = []
    for tag, name in zip(TAGS, (model, compare), strict=False):
        if name is None:
            continue
        m, processor = load_for_inspect(
            name, dtype=dtype, device=device, base=base if tag == "model" else None
        )
        layers, active = capture_layers(m, layer)
        loaded.append(
            {
                "tag": tag,
                "source": name,
                "model": m,
                "processor": processor,
                "layers": layers,
                "active": active,
            }
        )
    return loaded


def _load_data(suite):
    from vittle_cli.data.shift import load_suite_data
    from vittle_cli.data.shift.openended import load_openended_suite

    return load_openended_suite(suite) if suite.is_openended else load_suite_data(suite)


def _queries(suite, variant, limit: int | None, data) -> list[Query]:
    """The variant's prompts as the eval asks them (POPE-style or open-ended suites alike)."""
    from vittle_cli.data.shift import suite_questions
    from vittle_cli.data.shift.openended import variant_questions
    from vittle_cli.data.shift.questions import limit_items

    if suite.is_openended:
        items = limit_items(data.items, limit)
        return [
            Query(it.question_id, img, text)
            for it, img, text in variant_questions(suite, variant, data, items)
        ]
    qs = suite_questions(suite, variant, limit_per_split=limit, data=data)
    return [Query(q.question_id, q.image, q.text) for q in qs]


def _encode_variants(models, the_suite, all_variants, limit, batch_size, show_progress):
    """Pooled states of every (model, variant), keyed "<tag>/<variant>/<modality>/<stage>", and the clean
    variant's question ids (every variant must yield the same questions in the same order)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vittle_cli.model.capture import pooled_states

    data = _load_data(the_suite)
    arrays: dict[str, np.ndarray] = {}
    question_ids: list[str] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not show_progress, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("encoding", total=None)
        for vi, variant in enumerate(all_variants):
            queries = _queries(the_suite, variant, limit, data)
            ids = [q.question_id for q in queries]
            if vi == 0:
                question_ids = ids
                progress.update(task, total=len(ids) * len(all_variants) * len(models))
            elif ids != question_ids:  # pairing is by question: the order must be the clean one
                raise UsageError(
                    f"variant {variant.name} yields other questions than clean; check the suite data"
                )
            for m in models:
                progress.update(task, description=f"{m['tag']}: {variant.name}")
                pooled = pooled_states(
                    m["model"], m["processor"], queries, m["layers"], m["active"], batch_size,
                    on_batch=lambda k: progress.advance(task, k),
                )  # fmt: skip
                for (modality, stage), rows in pooled.items():
                    arrays[f"{m['tag']}/{variant.name}/{modality}/{stage}"] = rows

    return arrays, question_ids


def run_inspect_embeddings(
    model: str,
    suite: str,
    *,
    out: str | None = None,
    layer: int | None = None,
    limit: int | None = 50,
    compare: str | None = None,
    variants: list[str] | None = None,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    base: str | None = None,
    data_vars: dict[str, str] | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> EmbeddingsReport:
    """Encode clean and shifted suite questions with one model (or two, with `compare`) and measure the shift.

    Writes embeddings.safetensors (keys "<model|compare>/<variant>/<visual|text>/<before|after>", rows in
    manifest question_ids order), manifest.json (sources, layers, variants, metrics), pca.png and
    cosine_hist.png into `out` (default inspect/<model>-<suite>).

    Raises:
        UsageError: --out already holds results (without overwrite), unknown suite or variant names.
        ModelError: a model that cannot be loaded or has no place for the analysis.
    """
    from vittle_cli.data.shift import load_suite

    the_suite = load_suite(suite)
    if data_vars:
        the_suite = the_suite.with_data(data_vars)
    clean_variant = next((v for v in the_suite.variants if v.group == "clean"), None)
    if clean_variant is None:
        raise UsageError(f"suite {the_suite.name!r} has no clean variant to compare the shifts against")
    chosen = (
        [the_suite.variant(n) for n in variants]
        if variants
        else [v for v in the_suite.variants if v.group != "clean"]
    )
    chosen = [v for v in chosen if v.group != "clean"]
    if not chosen:
        raise UsageError("no shifted variant selected; pass --variants with names from the suite")
    out_dir = Path(out).expanduser() if out else Path("inspect") / f"{_slug(model)}-{the_suite.name}"
    if (out_dir / MANIFEST_FILE).exists() and not overwrite:
        raise UsageError(f"{out_dir} already holds an embeddings analysis; pass --overwrite or another --out")

    models = _load_models(model, compare, base, dtype, device, layer)
    all_variants = [clean_variant, *chosen]
    arrays, question_ids = _encode_variants(models, the_suite, all_variants, limit, batch_size, show_progress)

    report = EmbeddingsReport(
        out=str(out_dir),
        suite=the_suite.name,
        models=[
            {"tag": m["tag"], "source": m["source"], "layers": m["layers"], "bottleneck_active": m["active"]}
            for m in models
        ],
        variants=[{"name": v.name, "group": v.group} for v in all_variants],
        question_ids=question_ids,
    )
    for m in models:
        for v in chosen:
            for modality in MODALITIES:
                for stage in STAGES:
                    clean = arrays[f"{m['tag']}/{clean_variant.name}/{modality}/{stage}"]
                    shifted = arrays[f"{m['tag']}/{v.name}/{modality}/{stage}"]
                    cos, jsd, n = _pair_metrics(clean, shifted)
                    report.metrics.append(
                        VariantMetric(m["tag"], v.name, v.group, modality, stage, cos, jsd, n)
                    )
    _write_outputs(report, arrays, clean_variant.name, chosen, out_dir)
    return report


def _write_outputs(
    report: EmbeddingsReport, arrays: dict, clean_name: str, chosen: list, out_dir: Path
) -> None:
    from vittle_cli.fileio import write_json
    from vittle_cli.inspect.figures import cosine_hist_figure, pca_figure
    from vittle_cli.inspect.io import save_arrays

    out_dir.mkdir(parents=True, exist_ok=True)
    save_arrays(
        out_dir / ARRAYS_FILE,
        arrays,
        metadata={"suite": report.suite, "layout": "tag/variant/modality/stage"},
    )
    panels, hist = [], {m: [] for m in MODALITIES}
    for m in report.models:
        for modality in MODALITIES:
            active = m["bottleneck_active"][modality]
            for stage in STAGES if active else ("after",):  # without a bottleneck, before == after
                key = f"{m['tag']}/{{}}/{modality}/{stage}"
                label = m["source"] + (f" {stage} bottleneck" if active else "")
                jsd = _mean(report, m["tag"], [v.name for v in chosen], modality, stage, "jsd")
                jsd_text = "n/a" if jsd is None else f"{jsd:.4f}"
                clean = arrays[key.format(clean_name)]
                panels.append({
                    "title": f"{label} | {modality} tokens, layer {m['layers'][modality]} | mean JSD {jsd_text}",
                    "clean": clean,
                    "shifted": [(v.group, arrays[key.format(v.name)]) for v in chosen],
                })  # fmt: skip
                hist[modality].append(
                    {"label": label, "clean": clean, "shifted": [arrays[key.format(v.name)] for v in chosen]}
                )
    pca_figure(panels, out_dir / "pca.png")
    cosine_hist_figure(hist, out_dir / "cosine_hist.png")
    report.files = [ARRAYS_FILE, MANIFEST_FILE, "pca.png", "cosine_hist.png"]
    manifest = report.to_json()
    manifest["jsd"] = (
        "matrix-based JSD in nats; rows L2-normalised; C = Z^T Z / trace (vittle_cli/model/repr_metrics.py)"
    )
    manifest["pooling"] = "mean over non-padding visual (image-token) / text positions, per question"
    write_json(out_dir / MANIFEST_FILE, manifest)


def render_embeddings_report(report: EmbeddingsReport, console) -> None:
    """One table per model (variant x modality: cosine distance and JSD, 'before->after' where a bottleneck
    acts), then with --compare a side-by-side table of the group means after the bottleneck layer."""
    from rich.table import Table

    groups: dict[str, list[str]] = {}
    for v in report.variants[1:]:
        groups.setdefault(v["group"], []).append(v["name"])
    for m in report.models:
        title = f"{m['tag']}: {m['source']} on {report.suite} ({len(report.question_ids)} questions, clean vs shifted)"
        table = Table(title=title)
        table.add_column("variant", no_wrap=True)
        table.add_column("group")
        for modality in MODALITIES:
            for metric in ("cosine dist", "JSD"):
                table.add_column(f"{modality} {metric}", justify="right", no_wrap=True)
        for group, names in groups.items():
            for name in [*names, f"mean ({group})"]:
                picked = names if name.startswith("mean (") else [name]
                cells = [
                    _cell(report, m, picked, mod, attr)
                    for mod in MODALITIES
                    for attr in ("cosine_distance", "jsd")
                ]
                table.add_row(name, group, *cells, style="bold" if name.startswith("mean (") else None)
        console.print(table)
    if len(report.models) > 1:
        table = Table(title="side by side: group means of cosine distance / JSD after the bottleneck layer")
        table.add_column("group")
        for m in report.models:
            for modality in MODALITIES:
                table.add_column(f"{m['tag']} {modality}", justify="right", no_wrap=True)
        for group, names in groups.items():
            cells = []
            for m in report.models:
                for modality in MODALITIES:
                    cos = _mean(report, m["tag"], names, modality, "after", "cosine_distance")
                    jsd = _mean(report, m["tag"], names, modality, "after", "jsd")
                    cells.append("-" if cos is None else f"{cos:.4f} / {jsd:.4f}")
            table.add_row(group, *cells)
        console.print(table)
    console.print(f"wrote {', '.join(report.files)} to {report.out}")


def _mean(
    report: EmbeddingsReport, tag: str, names: list[str], modality: str, stage: str, attr: str
) -> float | None:
    vals = [getattr(report.lookup(tag, n, modality, stage), attr, None) for n in names]
    vals = [x for x in vals if x is not None]
    return float(np.mean(vals)) if vals else None


def _cell(report: EmbeddingsReport, m: dict, names: list[str], modality: str, attr: str) -> str:
    after = _mean(report, m["tag"], names, modality, "after", attr)
    if after is None:
        return "-"
    if not m["bottleneck_active"][modality]:
        return f"{after:.4f}"
    return f"{_mean(report, m['tag'], names, modality, 'before', attr):.4f}->{after:.4f}"
