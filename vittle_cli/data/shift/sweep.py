"""Severity sweeps (the paper's Figure 5): a suite's single shifts, each at every severity.

`vittle eval --severities 1,2,3,4,5` turns a suite into `<name>-sweep`: the clean variant, then every
visual shift of the suite at each ImageNet-C severity and every text shift at each rate (word probability
0.05 x rate). Joint variants are left out (a curve is one shift); translations have no severity and are
left out too. `--sweep-shifts a,b` keeps only the named shifts. Variant names are the specs (snow@1, ...),
so a sweep shares its answer cache entries' names with the suite it came from.
"""

from __future__ import annotations

from vittle_cli.errors import UsageError


def parse_int_list(text: str, option: str, low: int = 1, high: int = 5) -> list[int]:
    """'1,2,3' -> [1, 2, 3], sorted and unique; a one-line UsageError naming the option otherwise."""
    try:
        values = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers, e.g. 1,2,3,4,5 (got {text!r})") from None
    if not values or values[0] < low or values[-1] > high:
        raise UsageError(f"{option} takes severities from {low} to {high} (got {text!r})")
    return values


def sweep_shifts(suite) -> tuple[list[str], list[str]]:
    """(visual names, text names) of the suite's shifts, in suite order, translations excluded."""
    from vittle_cli.data.shift.translate import translate_lang

    visual, text = [], []
    for v in suite.variants:
        if v.visual is not None and v.visual.name not in visual:
            visual.append(v.visual.name)
        if v.text is not None and v.text.name not in text and translate_lang(v.text.name) is None:
            text.append(v.text.name)
    return visual, text


def severity_sweep(suite, severities: list[int], only: list[str] | None = None):
    """The sweep suite of `suite` (see the module docstring).

    Raises:
        UsageError: `only` names a shift the suite does not have, or nothing is left to sweep.
    """
    from vittle_cli.data.shift.suite import TextShift, Variant, VisualShift

    visual, text = sweep_shifts(suite)
    if only:
        unknown = [n for n in only if n not in visual + text]
        if unknown:
            raise UsageError(
                f"--sweep-shifts: {', '.join(unknown)} not in suite {suite.name!r}; its shifts: "
                + ", ".join(visual + text)
            )
        visual, text = [n for n in visual if n in only], [n for n in text if n in only]
    if not visual and not text:
        raise UsageError(f"suite {suite.name!r} has no visual or text shift with a severity to sweep")
    variants = [v for v in suite.variants if v.group == "clean"]
    variants += [
        Variant(group="visual", visual=VisualShift(name=n, severity=s)) for n in visual for s in severities
    ]
    variants += [Variant(group="text", text=TextShift(name=n, rate=s)) for n in text for s in severities]
    return suite.model_copy(update={"name": f"{suite.name}-sweep", "variants": variants})
