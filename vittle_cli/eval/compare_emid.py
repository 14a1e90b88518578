"""EMID in `vittle eval compare`: runs evaluated with `--emid` side by side (results.json's `emid` section).

Shown for the runs that have it, when at least two do; deltas against the first of them. EMID is a
difference of CLUB estimates, so it compares like for like only under one estimator and one pair of
encoders: runs that fitted their own estimator (the default) or used other encoders are compared with a note
saying so.
"""

from __future__ import annotations


def emid_comparison(docs: list[dict], labels: list[str], common: int | None = None) -> dict | None:
    """{"columns", "variants", "values", "groups", "group_values", "mean", "notes"} for the docs with an
    `emid` section (None when fewer than two have one); values are EMID in nats (None where absent)."""
    have = [(lab, d["emid"]) for lab, d in zip(labels, docs, strict=True) if d.get("emid")]
    if len(have) < 2:
        return None
    sections = [e for _, e in have]
    names: list[str] = []
    for e in sections:
        names += [n for n in e["variants"] if n not in names]
    groups: list[str] = []
    for e in sections:
        groups += [g for g in e["groups"] if g not in groups]
    return {
        "columns": [lab for lab, _ in have],
        "variants": names,
        "values": [[_emid(e["variants"].get(n)) for n in names] for e in sections],
        "groups": groups,
        "group_values": [[_emid(e["groups"].get(g)) for g in groups] for e in sections],
        "mean": [_emid(e.get("mean")) for e in sections],
        "notes": _notes(sections, common),
    }


def _emid(entry: dict | None) -> float | None:
    return entry["emid"] if entry else None


def _notes(sections: list[dict], common: int | None) -> list[str]:
    """Why the EMID columns may not compare like for like."""
    notes = []
    if len({(e["encoders"]["vision"], e["encoders"]["text"]) for e in sections}) > 1:
        notes.append("the runs' EMID used different encoders: their numbers are not comparable")
    clubs = {e["club"].get("data_digest") or e["club"]["source"] for e in sections}
    if len(clubs) > 1:
        notes.append(
            "each run's EMID comes from its own CLUB estimator; for a like-for-like comparison rerun with the "
            "same --club file (e.g. one run's emid/club.safetensors or the published CLUB_global.pt)"
        )
    if len({e["against"] for e in sections}) > 1:
        notes.append("the runs measured EMID against different variants")
    if common:
        notes.append(
            "EMID is each run's own, over all its questions (--common rescores the judged metric only)"
        )
    return notes


def emid_table(cmp: dict):
    """A rich table of `emid_comparison`'s result: signed EMID with deltas against the first column."""
    from rich.table import Table

    table = Table(title="EMID (nats; lower = more robust), deltas vs the first", title_justify="left")
    table.add_column("variant")
    for i, lab in enumerate(cmp["columns"]):
        table.add_column(lab if i == 0 else f"{lab} Δ", justify="right")

    def cells(values: list[float | None]) -> list[str]:
        base = values[0]
        out = ["-" if base is None else f"{base:+.4f}"]
        for v in values[1:]:
            delta = f" ({v - base:+.4f})" if v is not None and base is not None else ""
            out.append("-" if v is None else f"{v:+.4f}{delta}")
        return out

    for j, name in enumerate(cmp["variants"]):
        table.add_row(name, *cells([col[j] for col in cmp["values"]]))
    table.add_section()
    for j, g in enumerate(cmp["groups"]):
        table.add_row(f"mean {g}", *cells([col[j] for col in cmp["group_values"]]))
    table.add_row("mean all shifts", *cells(cmp["mean"]))
    return table
