"""The suite fields of a closed-form QA suite (`task: scienceqa | mmmu | mme | mmstar`): which benchmark files to read
(`data:`) and how a question becomes the user message (`task_options.prompt`). Validated with pydantic
so that every problem is reported at once, naming its key."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClosedQAData(_Strict):
    """`data:` of a closed-form QA suite (the suite's `task:` names the benchmark)."""

    source: str = Field(description="parquet file or folder, save_to_disk folder, or hub id (${source})")
    config: str | None = Field(None, description="hub config / parquet subfolder (ScienceQA-IMG, val)")
    split: str


class ClosedQAPrompt(_Strict):
    """str.format templates; fields: question, options, context, options_text. Only {question} (the
    stem) is ever perturbed."""

    template: str = Field(description="message of choice and yes/no questions")
    open_template: str | None = Field(None, description="message of open questions (MMMU)")
    option: str = Field("{letter}. {option}", description="one listed option")
    option_separator: str = "\n"
    context: str = Field("Context: {hint}\n", description="{context} when the item has a non-empty hint")


class ClosedQAOptions(_Strict):
    """`task_options:` of a closedqa suite."""

    prompt: ClosedQAPrompt


def validation_problems(err: ValidationError, prefix: str) -> list[str]:
    """One line per pydantic problem, prefixed with the suite key it sits under."""
    out = []
    for e in err.errors():
        loc = ".".join([prefix, *(str(x) for x in e["loc"])])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg}")
    return out
