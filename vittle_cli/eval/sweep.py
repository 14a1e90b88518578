"""Metric against severity (the paper's Figure 5 form) from a severity-sweep eval, and two or more models'
curves drawn together. A curve starts at severity 0 = the clean variant.

severity.json: {"metric", "models": {label: {"clean": value, "shifts": {shift: {"kind", "severity": [..],
"value": [..]}}}}}; severity.png: one panel per shift, one line per model.
"""

from __future__ import annotations

from pathlib import Path

from vittle_cli.eval.report import task_info
from vittle_cli.fileio import save_figure, write_json

SEVERITY_JSON = "severity.json"
SEVERITY_PNG = "severity.png"


def severity_curves(results: dict, metric: str | None = None) -> dict:
    """{"metric", "clean", "shifts"} of one results.json; shifts seen at a single severity are left out."""
    metric = metric or task_info(results)["primary_metric"]
    shifts: dict[str, dict] = {}
    clean = None
    for v in results["variants"]:
        m = results["metrics"].get(v["name"])
        value = None if m is None else m["all"].get(metric)
        if v["group"] == "clean":
            clean = value
            continue
        if v["group"] not in ("visual", "text") or value is None:
            continue
        shift = v["visual"] if v["group"] == "visual" else v["text"]
        level = shift.get("severity", shift.get("rate"))
        curve = shifts.setdefault(shift["name"], {"kind": v["group"], "severity": [], "value": []})
        curve["severity"].append(level)
        curve["value"].append(value)
    for curve in shifts.values():
        order = sorted(range(len(curve["severity"])), key=curve["severity"].__getitem__)
        curve["severity"] = [curve["severity"][i] for i in order]
        curve["value"] = [curve["value"][i] for i in order]
    shifts = {k: c for k, c in shifts.items() if len(c["severity"]) > 1}
    return {"metric": metric, "clean": clean, "shifts": shifts}


def has_sweep(results: dict) -> bool:
    return bool(severity_curves(results)["shifts"])


def write_severity(models: dict[str, dict], out: Path, metric: str | None = None) -> tuple[Path, Path] | None:
    """severity.json and severity.png in `out` for {label: results}; None when no result holds a sweep."""
    curves = {label: severity_curves(r, metric) for label, r in models.items()}
    curves = {label: c for label, c in curves.items() if c["shifts"]}
    if not curves:
        return None
    metric = next(iter(curves.values()))["metric"]
    doc = {
        "metric": metric,
        "models": {k: {"clean": c["clean"], "shifts": c["shifts"]} for k, c in curves.items()},
    }
    json_path = write_json(Path(out) / SEVERITY_JSON, doc)
    return json_path, plot_severity(doc, Path(out) / SEVERITY_PNG)


def plot_severity(doc: dict, path: Path) -> Path:
    """One panel per shift (metric vs severity, clean at 0), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(s for m in doc["models"].values() for s in m["shifts"]))
    cols = min(len(names), 5)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names, strict=False):
        for label, m in doc["models"].items():
            curve = m["shifts"].get(name)
            if curve is None:
                continue
            xs = ([0] if m["clean"] is not None else []) + curve["severity"]
            ys = ([m["clean"]] if m["clean"] is not None else []) + curve["value"]
            ax.plot(xs, ys, marker="o", label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("severity (0 = clean)", fontsize=8)
        ax.set_xticks(range(0, 6))
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes[0][0].set_ylabel(doc["metric"])
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def compare_severity(paths: list[str], out: Path, metric: str | None = None) -> tuple[Path, Path] | None:
    """`vittle eval compare --out`: every model's severity curves in one severity.png / severity.json
    (None, and nothing written, when no input is a sweep)."""
    from vittle_cli.eval.compare import column_labels, read_results

    docs = [read_results(p) for p in paths]
    return write_severity(dict(zip(column_labels(docs), docs, strict=True)), out, metric)
