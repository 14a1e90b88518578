"""Evaluation suites: a YAML file in recipes/suites/ (or any path) validated by a pydantic model.

A suite names its data (`builtin:shapes`, or POPE files whose paths may hold `${var}` placeholders that
the CLI fills), the prompt suffix, the seed every perturbation is derived from, and its variants: clean,
visual, text and joint shifts, each listed explicitly so that results always say what was measured.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vittle_cli.errors import UsageError
from vittle_cli.fileio import read_utf8

Group = Literal["clean", "visual", "text", "joint"]
METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio", "ambiguous")
DEFAULT_SUFFIX = "\nAnswer the question using a single word or phrase."
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def _fill(text: str, variables: dict[str, str]) -> str:
    """`text` with each `${var}` that `variables` names replaced by its value."""
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def _check_name(name: str, kind: str) -> str:
    from vittle_cli.data.shift.registry import get_perturbation

    try:
        get_perturbation(name, kind)  # type: ignore[arg-type]
    except UsageError as e:  # pydantic collects ValueErrors, so every problem is reported at once
        raise ValueError(str(e)) from None
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VisualShift(_Strict):
    """A visual perturbation (registered name) at an ImageNet-C severity."""

    name: str
    severity: int = Field(3, ge=1, le=5)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_name(v, "visual")

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.severity}"


class TextShift(_Strict):
    """A text perturbation (registered name) at a rate; word probability = 0.05 x rate."""

    name: str
    rate: int = Field(3, ge=1, le=5)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_name(v, "text")

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.rate}"


class Variant(_Strict):
    """One evaluated condition. `name` defaults to the perturbation specs, e.g. 'snow@3+keyboard@3'."""

    name: str = ""
    group: Group
    visual: VisualShift | None = None
    text: TextShift | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Variant:
        need = {
            "clean": (False, False),
            "visual": (True, False),
            "text": (False, True),
            "joint": (True, True),
        }
        has = (self.visual is not None, self.text is not None)
        if has != need[self.group]:
            wants = {
                "clean": "neither visual nor text",
                "visual": "visual only",
                "text": "text only",
                "joint": "both visual and text",
            }[self.group]
            raise ValueError(f"a {self.group!r} variant needs {wants}")
        if not self.name:
            specs = [s.spec for s in (self.visual, self.text) if s is not None]
            # the model is frozen: fill the derived default once, here at validation
            object.__setattr__(self, "name", "+".join(specs) or "clean")
        return self


class PopeFiles(_Strict):
    """Where POPE is: a root whose layout is detected (LLaVA folder, POPE repository, lmms-lab/POPE
    parquet / save_to_disk folder / hub id), and/or explicit files, which win over what the root holds."""

    root: str | None = None
    layout: Literal["auto", "llava", "pope", "hf"] = "auto"
    questions: str | None = None
    labels_dir: str | None = None
    image_root: str | None = None

    def unfilled(self) -> list[str]:
        """Placeholders that still matter: a root placeholder does not once explicit files are given."""
        fields = [self.questions, self.labels_dir, self.image_root]
        if not (self.questions or self.labels_dir):
            fields.append(self.root)
        return sorted({m for s in fields if s for m in _PLACEHOLDER.findall(s)})

    def without_unfilled_root(self) -> PopeFiles:
        if self.root and _PLACEHOLDER.search(self.root):
            return self.model_copy(update={"root": None})
        return self


class PopeData(_Strict):
    pope: PopeFiles


class OpenEndedFiles(_Strict):
    """An LLM-judged benchmark (vittle_cli.data.shift.openended): its layout and the files it needs."""

    layout: Literal["lbcoco", "lbwild", "lbwilder", "wvbench"]
    questions: str
    rules: str
    answers: str | None = None
    context: str | None = None
    image_root: str | None = None


class OpenEndedData(_Strict):
    openended: OpenEndedFiles


class Suite(_Strict):
    """A validated evaluation suite."""

    name: str
    description: str = ""
    task: str = Field(
        "pope", description="task family (vittle_cli.eval.tasks): how data is read, prompted and scored"
    )
    task_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the task family (it validates them)"
    )
    data: str | PopeData | OpenEndedData | dict[str, Any] = Field(
        description="'builtin:shapes', {pope: {root, layout, questions, labels_dir, image_root}}, "
        "{openended: {layout, ...}}, or the task family's form"
    )
    splits: list[str] = Field(default_factory=lambda: ["adversarial", "popular", "random"])
    prompt_suffix: str = DEFAULT_SUFFIX
    seed: int = 0
    max_new_tokens: int = Field(8, ge=1)
    variants: list[Variant] = Field(min_length=1)
    metrics: list[str] = Field(default_factory=lambda: list(METRICS))

    @model_validator(mode="after")
    def _pope_fields(self) -> Suite:
        """The POPE family's data and metrics; other families check theirs when they load the suite."""
        if self.task != "pope":
            return self
        if isinstance(self.data, str) and self.data != "builtin:shapes":
            raise ValueError(
                f"unknown data {self.data!r}; use 'builtin:shapes' or a {{pope: {{...}}}} mapping"
            )
        if isinstance(self.data, OpenEndedData):
            raise ValueError("data: {openended: ...} is read by the LLM-judged family; add `task: openended`")
        if isinstance(self.data, dict):
            raise ValueError(
                "data: the pope task needs 'builtin:shapes' or {pope: {questions, labels_dir, image_root}}"
            )
        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {', '.join(bad)}; known: {', '.join(METRICS)}")
        return self

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate variant name(s): {', '.join(dupes)}")
        if sum(v.group == "clean" for v in self.variants) > 1:
            raise ValueError("at most one clean variant (the reference for drops)")
        return self

    def variant(self, name: str) -> Variant:
        """The variant called `name`. Raises UsageError listing the suite's variants."""
        for v in self.variants:
            if v.name == name:
                return v
        raise UsageError(
            f"suite {self.name!r} has no variant {name!r}; it has: {', '.join(v.name for v in self.variants)}"
        )

    def placeholders(self) -> list[str]:
        """Names of the `${var}` placeholders still unfilled in the data paths."""
        if isinstance(self.data, OpenEndedData):
            values = [v for v in self.data.openended.model_dump().values() if isinstance(v, str)]
            return sorted({m for s in values for m in _PLACEHOLDER.findall(s)})
        if isinstance(self.data, dict):  # another family's data: its top-level string values
            return sorted(
                {m for v in self.data.values() if isinstance(v, str) for m in _PLACEHOLDER.findall(v)}
            )
        if not isinstance(self.data, PopeData):
            return []
        return self.data.pope.unfilled()

    def with_data(self, variables: dict[str, str] | None = None, **fields: str | None) -> Suite:
        """A copy with `${var}` placeholders filled from `variables` and POPE fields (questions,
        labels_dir, image_root) replaced where given. Other families' data: `${var}` filled in its
        top-level string values. No-op for builtin data."""
        if isinstance(self.data, OpenEndedData):
            return self._with_openended(variables or {})
        if isinstance(self.data, dict):
            data = {k: _fill(v, variables or {}) if isinstance(v, str) else v for k, v in self.data.items()}
            return self.model_copy(update={"data": data})
        if not isinstance(self.data, PopeData):
            return self
        given = {k: str(v) for k, v in fields.items() if v is not None}
        unknown = set(given) - set(PopeFiles.model_fields)
        if unknown:
            raise UsageError(f"unknown POPE field(s) {', '.join(sorted(unknown))}")
        values = {**self.data.pope.model_dump(), **given}
        variables = variables or {}
        filled = {
            k: _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), v)
            if isinstance(v, str)
            else v
            for k, v in values.items()
        }
        try:
            files = PopeFiles(**filled)
        except ValidationError as e:
            raise UsageError("; ".join(_format_errors(e)).replace("layout:", "--pope-layout:")) from None
        return self.model_copy(update={"data": PopeData(pope=files)})

    def _with_openended(self, variables: dict[str, str]) -> Suite:
        def fill(v):
            if not isinstance(v, str):
                return v
            return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), v)

        filled = {k: fill(v) for k, v in self.data.openended.model_dump().items()}
        return self.model_copy(update={"data": OpenEndedData(openended=OpenEndedFiles(**filled))})

    @property
    def is_openended(self) -> bool:
        """True for the LLM-judged suites (`task: openended`; answers scored by a judge)."""
        return self.task == "openended"


def suites_dir() -> Path:
    """The shipped suites folder (recipes/suites/)."""
    from vittle_cli.recipe import recipes_dir

    return recipes_dir() / "suites"


def shipped_suites() -> dict[str, Path]:
    """Shipped suite name -> file, sorted by name."""
    return {p.stem: p for p in sorted(suites_dir().glob("*.yaml"))}


def _format_errors(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        out.append(f"{loc}: {msg}" if loc else msg)
    return out


def load_suite(name_or_path: str | Path) -> Suite:
    """Load a suite by shipped name (`vittle eval --list-suites`) or by YAML path.

    Raises:
        UsageError: unknown name (lists the shipped ones), unreadable YAML, or validation problems (all at once).
    """
    path = Path(name_or_path)
    shipped = shipped_suites()
    if str(name_or_path) in shipped:
        path = shipped[str(name_or_path)]
    elif not (path.suffix in (".yaml", ".yml") and path.is_file()):
        raise UsageError(
            f"unknown suite {str(name_or_path)!r}; shipped suites: {', '.join(shipped)} "
            "(or pass the path of a suite .yaml file)"
        )
    try:
        raw = yaml.safe_load(read_utf8(path, "suite", UsageError))
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"cannot read suite {path}: {e}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"suite {path} must be a YAML mapping (name, data, variants, ...)")
    try:
        return Suite.model_validate(raw)
    except ValidationError as e:
        problems = _format_errors(e)
        lines = "\n".join(f"  - {p}" for p in problems)
        raise UsageError(f"invalid suite {path} ({len(problems)} problem(s)):\n{lines}") from None
