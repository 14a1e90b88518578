"""The `vittle inspect emid` pipeline: embed every variant (cached), fit or load CLUB, EMID per variant and
per group with bootstrap intervals, the JSD bound terms; emid.json and the console table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vittle_cli.errors import ModelError, UsageError
from vittle_cli.fileio import read_utf8, write_atomic, write_json
from vittle_cli.inspect.emid import CACHE_DIR, CLUB_FILE, CLUB_INFO, EMID_FILE
from vittle_cli.model.emid_embed import DEFAULT_CLUB_STEPS, DEFAULT_TEXT_ENCODER, DEFAULT_VISION_ENCODER


@dataclass
class EmidOptions:
    """What `vittle inspect emid` takes besides the eval folder."""

    against: str | None = None
    vision_encoder: str = DEFAULT_VISION_ENCODER
    text_encoder: str = DEFAULT_TEXT_ENCODER
    club: str | None = None  # a checkpoint (.safetensors, or the published weights-only .pt)
    hidden_size: int = 500
    train_steps: int = DEFAULT_CLUB_STEPS
    seed: int = 0
    resamples: int = 200
    batch_size: int = 16
    device: str = "cpu"
    cache_dir: Path | None = None  # perturbed-image cache ($VITTLE_CACHE by default)


def load_club(path: str):
    """A CLUB estimator from a .safetensors file or a weights-only .pt state dict; sizes read from it."""
    import torch

    from vittle_cli.model.emid import ClubEstimator

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--club {path}: no such file (a .safetensors or a weights-only .pt state dict)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
        half, x_dim = state["p_mu.0.weight"].shape
        club = ClubEstimator(x_dim, state["p_mu.2.weight"].shape[0], 2 * half)
        club.load_state_dict(state)
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise ModelError(f"--club {path} is not a CLUB state dict (p_mu.*, p_logvar.*): {e}") from e
    return club.eval()


def fitted_club(embedded: dict, opts: EmidOptions, cache: Path, encoders: dict, console):
    """Load --club, or reuse / fit the estimator on every variant's (x, answer) and (x, reference) pairs."""
    from vittle_cli.model.emid import train_club

    if opts.club:
        return load_club(opts.club), {"source": str(opts.club)}
    x = np.concatenate([e.inputs for e in embedded.values()] * 2)
    y = np.concatenate([e.model for e in embedded.values()] + [e.reference for e in embedded.values()])
    info = {"source": "fitted on this eval's pooled variants", "encoders": encoders, "pairs": int(len(x)),
            "hidden_size": opts.hidden_size, "steps": opts.train_steps, "seed": opts.seed,
            "data_digest": _array_digest(x, y)}  # fmt: skip
    path, info_path = cache / CLUB_FILE, cache / CLUB_INFO
    if path.is_file() and info_path.is_file() and json.loads(read_utf8(info_path, "club info")) == info:
        return load_club(str(path)), info
    console.print(f"fitting CLUB (hidden {opts.hidden_size}, {opts.train_steps} steps) on {len(x)} pairs")
    club = train_club(x, y, hidden_size=opts.hidden_size, steps=opts.train_steps, seed=opts.seed,
                      device=opts.device)  # fmt: skip
    from safetensors.torch import save_file

    write_atomic(path, lambda tmp: save_file({k: v.contiguous() for k, v in club.state_dict().items()}, tmp))
    write_json(info_path, info)
    return club, info


def _array_digest(*arrays) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


def run_inspect_emid(eval_dir: str | Path, opts: EmidOptions, console, encoders=None,
                     results: dict | None = None) -> dict:  # fmt: skip
    """EMID of every shifted variant against the clean one; writes EVAL_DIR/emid.json. Returns the report.

    Args:
        results: the eval's results document, when the caller has it before results.json is written
            (`vittle eval --emid`); EMID then covers exactly that eval's questions.
        encoders: ready encoders (tests); default: opts' encoders, loaded only if an embedding is missing.
    """
    from vittle_cli.data.shift.openended import load_openended_suite
    from vittle_cli.data.shift.questions import limit_items
    from vittle_cli.inspect.emid import _clean_variant, _rows, embed_variant, load_eval_folder
    from vittle_cli.model.emid import emi

    eval_dir = Path(eval_dir)
    suite, records, limit = load_eval_folder(eval_dir, results)
    clean_name = _clean_variant(suite, opts.against)
    if encoders is None:
        from vittle_cli.model.emid_embed import EmidEncoders, check_emid_sources

        check_emid_sources(opts.vision_encoder, opts.text_encoder, opts.club)
        encoders = EmidEncoders(opts.vision_encoder, opts.text_encoder, opts.device)
    data = load_openended_suite(suite)
    ids = {qid for v, qid in records if v == clean_name}
    # the eval's own questions (a cache kept from a run with a larger --limit holds more answers)
    items = [it for it in limit_items(data.items, limit) if it.question_id in ids]
    if len(items) < 2:
        raise UsageError(
            f"{eval_dir}: the variant {clean_name!r} has {len(items)} answer(s); EMID needs more"
        )
    cache = eval_dir / CACHE_DIR
    embedded, computed = {}, 0
    for variant in suite.variants:
        rows = _rows(suite, records, variant.name, items)
        if len(rows) != len(items):
            continue  # a variant the eval has not answered completely: reported as skipped
        embedded[variant.name], new = embed_variant(
            suite, data, variant, rows, encoders, cache, opts.cache_dir, opts.batch_size
        )
        computed += new
    club, club_info = fitted_club(embedded, opts, cache, encoders.names, console)
    report = _report(suite, clean_name, embedded, club, opts)
    report.update(
        eval_dir=str(eval_dir), encoders=encoders.names, club=club_info, questions=len(items),
        embedded_now=computed, skipped=[v.name for v in suite.variants if v.name not in embedded],
        emi={name: emi(club, e) for name, e in embedded.items()},
    )  # fmt: skip
    write_json(eval_dir / EMID_FILE, report)
    return report


def _report(suite, clean_name: str, embedded: dict, club, opts: EmidOptions) -> dict:
    from vittle_cli.model.emid import bootstrap_emid_draws, emid, emid_upper_bound, percentile_interval

    clean = embedded[clean_name]
    shifted = {n: e for n, e in embedded.items() if n != clean_name}
    draws = bootstrap_emid_draws(club, clean, shifted, resamples=opts.resamples, seed=opts.seed)
    groups = {v.name: v.group for v in suite.variants}
    variants = {}
    for name, e in shifted.items():
        lo, hi = percentile_interval(draws[name])
        variants[name] = {"group": groups[name], "emid": emid(club, clean, e), "ci95": [lo, hi],
                          **emid_upper_bound(clean, e)}  # fmt: skip

    def mean_of(names: list[str]) -> dict:
        """Mean EMID and bound over `names`; the interval from the same draws' means."""
        return {
            "emid": float(np.mean([variants[n]["emid"] for n in names])),
            "ci95": list(percentile_interval(np.mean([draws[n] for n in names], axis=0))),
            "bound": float(np.mean([variants[n]["bound"] for n in names])),
            "variants": len(names),
        }

    by_group = {
        g: mean_of([n for n, v in variants.items() if v["group"] == g])
        for g in dict.fromkeys(v["group"] for v in variants.values())
    }
    return {
        "against": clean_name, "variants": variants, "groups": by_group,
        # the paper's summary: EMID averaged over every shifted variant
        "mean": mean_of(list(variants)) if variants else None,
        "bootstrap": {"resamples": opts.resamples, "seed": opts.seed, "level": 0.95,
                      "unit": "questions, the same draw for the clean set and every variant"},
        "note": "EMID = EMI(clean) - EMI(shifted), EMI = I(x; model answer) - I(x; reference answer) by CLUB "
        "(nats); positive = the shift costs effective information (less robust). bound = sqrt(jsd_image) + "
        "sqrt(jsd_query) + jsd_answers_clean^(1/4) + jsd_answers_shifted^(1/4), the reference's scale-"
        "adjusted form",
    }  # fmt: skip


def render_emid_table(report: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"EMID against {report['against']!r} (nats; lower = more robust)")
    for col in ("variant", "group", "EMID", "95% CI", "bound", "JSD img", "JSD query"):
        table.add_column(col, justify="left" if col in ("variant", "group") else "right")
    for name, v in report["variants"].items():
        table.add_row(name, v["group"], f"{v['emid']:+.4f}", f"[{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]",
                      f"{v['bound']:.4f}", f"{v['jsd_image']:.4f}", f"{v['jsd_query']:.4f}")  # fmt: skip
    means = list(report["groups"].items())
    if report.get("mean") and len(means) > 1:
        means.append(("all shifts", report["mean"]))
    for g, v in means:
        table.add_row(f"mean ({v['variants']})", g, f"{v['emid']:+.4f}",
                      f"[{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]", f"{v['bound']:.4f}", "", "")  # fmt: skip
    console.print(table)
    if report.get("skipped"):
        console.print(f"skipped (answers incomplete): {', '.join(report['skipped'])}")
