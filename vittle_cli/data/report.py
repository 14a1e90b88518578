"""Bad-sample bookkeeping: named problems, their fixes, and the report the trainer prints.

A sample with a problem is never fed to the model: with data.on_bad_sample=skip it is counted (and a few ids
kept as examples), with data.on_bad_sample=error the first one raises a DataError naming the sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vittle_cli.errors import DataError, VittleError

# problem -> (what went wrong, how to fix it). "truncated" is counted but the sample is still used.
PROBLEMS: dict[str, tuple[str, str]] = {
    "missing_image": ("image file not found", "check data.image_root and the sample's image path"),
    "corrupt_image": ("image file cannot be decoded", "re-export the image or remove the sample"),
    "image_too_large": (
        "the image has more pixels than vittle decodes (a decompression bomb or a mistaken file)",
        "downscale the image (no training image needs more than 40 megapixels) or remove the sample",
    ),
    "empty_conversation": (
        "no user turn followed by an assistant response",
        "give the sample at least one user and one assistant turn, or remove it",
    ),
    "unknown_role": (
        "a turn has a role other than human/user, gpt/assistant or system",
        "rename the role or remove the sample",
    ),
    "image_outside_root": (
        "image path escapes data.image_root",
        "use a path relative to data.image_root, or point data.image_root at the folder that holds it",
    ),
    "too_long": (
        "even the first turn (with its image) is longer than data.max_length tokens",
        "raise data.max_length or shorten the sample",
    ),
    "response_not_located": (
        "the assistant response could not be located in the rendered chat template",
        "check that the processor's chat template renders each assistant turn after its generation prompt",
    ),
    "image_without_placeholder": (
        "the sample has more images than <image> placeholders",
        "add one <image> placeholder per image to the user turns",
    ),
    "placeholder_without_image": (
        "the sample has more <image> placeholders than images",
        "add the missing image or remove the extra <image> placeholders",
    ),
    "video_not_supported": (
        "the sample has videos and this model takes none",
        "train videos on a family that takes them (see `vittle env`), or remove the video samples",
    ),
    "video_without_placeholder": (
        "the sample has more videos than <video> placeholders",
        "add one <video> placeholder per video to the user turns",
    ),
    "placeholder_without_video": (
        "the sample has more <video> placeholders than videos",
        "add the missing video or remove the extra <video> placeholders",
    ),
    "missing_video": ("video file (or one of its frame files) not found", "check the sample's video path"),
    "corrupt_video": ("video cannot be decoded", "re-encode the video or remove the sample"),
    "video_outside_root": (
        "video path escapes data.image_root",
        "use a path relative to data.image_root, or point data.image_root at the folder that holds it",
    ),
    "truncated": ("trailing turns dropped to fit data.max_length", "raise data.max_length to keep them"),
}
MAX_EXAMPLES = 20  # sample ids kept per problem


class SampleProblem(Exception):
    """Raised inside the data pipeline for one bad sample; turned into a count or a DataError."""

    def __init__(self, kind: str, detail: str = "", fix: str | None = None):
        assert kind in PROBLEMS, kind
        self.kind = kind
        self.detail = detail
        self.fix = fix or PROBLEMS[kind][1]  # a fix that knows the sample's format beats the generic one
        super().__init__(f"{kind}: {detail}" if detail else kind)


def problem_error(sample_id: str, problem: SampleProblem) -> DataError:
    """The DataError for data.on_bad_sample=error: names the sample, the problem and the fix."""
    what = PROBLEMS[problem.kind][0]
    detail = f" ({problem.detail})" if problem.detail else ""
    return DataError(
        f"sample {sample_id!r}: {problem.kind}: {what}{detail}; fix: {problem.fix}, or set "
        "data.on_bad_sample=skip"
    )


@dataclass
class DataReport:
    """What happened to the samples of one source. Shared by the dataset and the trainer.

    Counts of problems found lazily (image decoding, rendering) grow while training runs; with
    data.num_workers > 0 those happen in worker processes and only the up-front counts are visible here.
    """

    source: str
    total: int = 0  # samples in the source (after data.limit)
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    first: dict[str, tuple[str, str]] = field(default_factory=dict)  # kind -> (detail, fix) of its first case

    def record(self, kind: str, sample_id: str, problem: SampleProblem | None = None) -> bool:
        """Count one problem; True when it is the first of its kind (so the caller can warn once)."""
        first = kind not in self.counts
        if first:
            self.first[kind] = (problem.detail, problem.fix) if problem else ("", PROBLEMS[kind][1])
        self.counts[kind] = self.counts.get(kind, 0) + 1
        ids = self.examples.setdefault(kind, [])
        if len(ids) < MAX_EXAMPLES:
            ids.append(sample_id)
        return first

    @property
    def skipped(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind != "truncated")

    def line(self, kind: str) -> str:
        ids = ", ".join(self.examples.get(kind, [])[:3])
        more = ", ..." if self.counts[kind] > 3 else ""
        verb = "" if kind == "truncated" else "skipped, "
        detail, fix = self.first.get(kind, ("", PROBLEMS[kind][1]))
        first = f"; first: {detail}" if detail else ""
        return f"{self.counts[kind]} {verb}{kind}: {PROBLEMS[kind][0]} (e.g. {ids}{more}{first}); fix: {fix}"

    def merge(self, other: DataReport) -> None:
        """Add another report's counts (the combined report of a mix of sources)."""
        self.total += other.total
        for kind, n in other.counts.items():
            self.first.setdefault(kind, other.first.get(kind, ("", PROBLEMS[kind][1])))
            self.counts[kind] = self.counts.get(kind, 0) + n
            ids = self.examples.setdefault(kind, [])
            ids.extend(other.examples.get(kind, [])[: MAX_EXAMPLES - len(ids)])

    @property
    def bad_fraction(self) -> float:
        return self.skipped / self.total if self.total else 0.0

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "total": self.total,
            "bad": self.skipped,
            "bad_fraction": round(self.bad_fraction, 6),
            "counts": dict(sorted(self.counts.items())),
            "examples": {k: self.examples.get(k, []) for k in sorted(self.counts)},
            "fixes": {k: self.first.get(k, ("", PROBLEMS[k][1]))[1] for k in sorted(self.counts)},
        }

    def table(self) -> str:
        """The per-reason table (plain text, for messages and logs)."""
        rows = [("reason", "count", "e.g.", "fix")]
        for kind in sorted(self.counts):
            detail, fix = self.first.get(kind, ("", PROBLEMS[kind][1]))
            ids = ", ".join(self.examples.get(kind, [])[:3])
            rows.append((kind, str(self.counts[kind]), ids + (f" ({detail})" if detail else ""), fix))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            "  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
            for r in rows
        )

    def summary(self) -> str:
        head = f"{self.source}: {self.total} samples, {self.total - self.skipped} used"
        if not self.counts:
            return head
        return head + "\n" + "\n".join(f"  {self.line(k)}" for k in sorted(self.counts))

    def warn(self, kinds: list[str] | None = None) -> None:
        """Print one rich warning line per problem kind (all kinds by default)."""
        from rich.console import Console
        from rich.markup import escape

        console = Console(stderr=True, highlight=False)
        for kind in kinds if kinds is not None else sorted(self.counts):
            console.print(f"[yellow]warning:[/yellow] {escape(self.source)}: {escape(self.line(kind))}")


class BadDataError(VittleError):
    """More bad samples than data.max_bad_fraction allows (exit 1: the run stops; --dry-run turns it into
    a UsageError, exit 2)."""

    def __init__(self, report: DataReport, max_fraction: float, when: str):
        self.report = report
        super().__init__(
            f"{when}: {report.skipped} of {report.total} samples are bad ({report.bad_fraction:.1%}), more than "
            f"data.max_bad_fraction={max_fraction:g}; fix the data (per reason below) or raise "
            f"data.max_bad_fraction\n{report.table()}"
        )


def check_bad_fraction(report: DataReport, max_fraction: float, when: str = "data pre-scan") -> None:
    """Raise BadDataError when the report's share of bad samples is above `max_fraction`."""
    if report.bad_fraction > max_fraction:
        raise BadDataError(report, max_fraction, when)
