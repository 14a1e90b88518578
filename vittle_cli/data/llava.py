"""The dataset of one source: its rows, checked up front (the pre-scan), rendered lazily into model inputs.

    dataset, report = build_train_dataset(recipe.data, processor, seed=recipe.train.seed)  # mixture.py
    collator = DataCollator(processor)

Cheap problems (missing or escaping image and video paths, empty conversations, placeholder/image and
placeholder/video mismatches, videos for a model that takes none, images longer than data.max_length) are
found when the dataset is built; decoding and rendering problems appear in __getitem__. With data.on_bad_sample=skip a bad sample is replaced by the next good one (deterministically)
and counted in the shared DataReport (and appended to `problem_log`, which the trainer reads, since worker
processes have their own copy of the report); with "error" the first one raises a DataError naming it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vittle_cli.data.conversation import (
    Conversation,
    check_image_paths,
    load_images,
    load_videos,
    parse_row,
    sample_id,
)
from vittle_cli.data.render import image_token_estimate, render_conversation, template_text
from vittle_cli.data.report import BadDataError, DataReport, SampleProblem, problem_error
from vittle_cli.data.sources import Source, load_source
from vittle_cli.data.video import VideoOptions, require_av, takes_video
from vittle_cli.errors import DataError

LENGTH_CALIBRATION_SAMPLES = 64  # rows tokenised to turn character counts into token estimates


class TrainDataset(Dataset):
    """Map-style dataset of rendered samples: dicts of 1-D input_ids/labels (+ pixel_values etc.).

    Attributes:
        lengths: cheap token-length estimates per sample (for length-grouped sampling).
        has_image: whether each sample has at least one image or video (for modality-grouped sampling).
        report: the shared DataReport of this source.
        seed: the seed samplers built on this dataset should use by default.
    """

    def __init__(
        self,
        source: Source,
        processor: Any,
        rows: list[int],
        ids: list[str],
        lengths: list[int],
        has_image: list[bool],
        report: DataReport,
        max_length: int,
        on_bad_sample: str,
        seed: int,
        video_options: VideoOptions | None = None,
    ):
        self.source = source
        self.processor = processor
        self.rows = rows
        self.ids = ids
        self.lengths = lengths
        self.has_image = has_image
        self.report = report
        self.max_length = max_length
        self.on_bad_sample = on_bad_sample
        self.seed = seed
        self.video_options = video_options or VideoOptions()
        self._bad: set[int] = set()  # indices found bad lazily: counted once, skipped from then on
        self._truncated: set[int] = set()  # counted once, not once per epoch
        self.problem_log: Path | None = None  # JSONL of problems found while training (set by the trainer)

    def __len__(self) -> int:
        return len(self.rows)

    def sample_id(self, index: int) -> str:
        return self.ids[index]

    def conversation(self, index: int) -> Conversation:
        """The parsed (not rendered) conversation of sample `index`, image paths resolved."""
        conv = parse_row(self.source.row(self.rows[index]), self.source.form, self.rows[index])
        check_image_paths(conv, self.source.image_root, self.source.enforce_root)
        return conv

    def render(self, index: int) -> dict[str, torch.Tensor]:
        """Render sample `index`, raising SampleProblem if it cannot be used."""
        conv = self.conversation(index)
        videos = load_videos(conv, self.video_options, _frame_factor(self.processor)) if conv.videos else []
        rendered = render_conversation(
            self.processor, conv.messages, load_images(conv), self.max_length, videos
        )
        if rendered.truncated and index not in self._truncated:
            self._truncated.add(index)
            if self.report.record("truncated", conv.id):
                self.report.warn(["truncated"])
        return rendered.tensors

    def _log_problem(self, sid: str, problem: SampleProblem) -> None:
        if self.problem_log is None:
            return
        line = json.dumps(
            {"source": self.report.source, "id": sid, "kind": problem.kind, "detail": problem.detail}
        )
        with open(self.problem_log, "a", encoding="utf-8") as f:  # one short appended line: atomic enough
            f.write(line + "\n")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self.rows)
        for step in range(n):
            i = (index + step) % n  # skip mode: the next good sample stands in, the same one every time
            if i in self._bad:
                continue
            try:
                return self.render(i)
            except SampleProblem as problem:
                if self.on_bad_sample == "error":
                    raise problem_error(self.ids[i], problem) from None
                self._bad.add(i)
                self._log_problem(self.ids[i], problem)
                if self.report.record(problem.kind, self.ids[i], problem):
                    self.report.warn([problem.kind])
        raise DataError(f"{self.report.source}: every sample is bad; see the warnings above and fix the data")


def _frame_factor(processor) -> int:
    """The side a video frame is brought up to at least: the processor's patch_size * merge_size (28)."""
    image_processor = processor.image_processor
    return image_processor.patch_size * image_processor.merge_size


def _check_videos(conv: Conversation, processor, video_ok: bool) -> None:
    """Refuse videos for a model that takes none; a video file without PyAV stops the run (one line).

    Raises:
        SampleProblem: video_not_supported.
        DataError: PyAV is missing.
    """
    if not video_ok:
        from vittle_cli.model.families import video_family_names

        raise SampleProblem(
            "video_not_supported",
            f"{len(conv.videos)} video(s), processor {type(processor).__name__}",
            fix=f"train videos on a model of a family that takes them ({video_family_names()}), "
            "or remove the video samples",
        )
    if any(v.frames is None for v in conv.videos):
        require_av()


def _prescan_row(
    row: dict, index: int, source: Source, processor, video_ok: bool, per_image: int, max_length: int
) -> Conversation:
    """The cheap checks of one row (nothing decoded): its conversation, or the SampleProblem it has."""
    conv = parse_row(row, source.form, index)
    if conv.videos:
        _check_videos(conv, processor, video_ok)
    check_image_paths(conv, source.image_root, source.enforce_root)
    if len(conv.images) * per_image > max_length:
        raise SampleProblem("too_long", f"{len(conv.images)} image(s) of ~{per_image} tokens > {max_length}")
    return conv


def _length_model(processor, convs: list[Conversation]) -> tuple[float, float]:
    """(tokens per character of message text, template tokens per message), measured on a few samples
    rendered with the chat template (images counted separately)."""
    tok = processor.tokenizer
    texts = [" ".join(c.get("text") or "" for m in conv.messages for c in m["content"]) for conv in convs]
    chars = sum(len(t) for t in texts)
    if not chars:
        return 0.25, 0.0
    ratio = sum(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]) / chars
    try:
        rendered = [template_text(processor, conv.messages) for conv in convs]
    except SampleProblem:  # such samples are counted when they are read; the estimate just gets cruder
        return ratio, 0.0
    total = sum(len(ids) for ids in tok(rendered)["input_ids"])
    n_messages = sum(len(conv.messages) for conv in convs)
    return ratio, max(0.0, (total - ratio * chars) / n_messages)


@dataclass
class SourceEntry:
    """One source of data.train / data.eval with its settings resolved (entry's own, else the section's)."""

    path: str
    weight: float = 1.0
    limit: int | None = None
    shuffle: bool = False
    image_root: str | None = None
    format: str | None = None


def _scan_order(n_rows: int, entry: SourceEntry, seed: int) -> list[int]:
    """Row indices to read: the first `limit` rows, or `limit` seeded-random ones with shuffle."""
    total = n_rows if entry.limit is None else min(entry.limit, n_rows)
    if not entry.shuffle:
        return list(range(total))
    return sorted(random.Random(f"{seed}/{entry.path}").sample(range(n_rows), total))


def _iter_selected(source: Source, order: list[int]):
    if len(order) == len(source) or order == list(range(len(order))):
        yield from zip(order, source.iter_rows(), strict=False)
        return
    for index in order:
        yield index, source.row(index)


def build_dataset(
    entry: SourceEntry | str, data: Any, processor: Any, seed: int = 0, cache_dir: Path | None = None
) -> tuple[TrainDataset, DataReport]:
    """Open one source, run the pre-scan (cheap checks, no image decoding) on its samples and return the lazy
    dataset with its report.

    Args:
        entry: the source and its settings (a plain string: data's settings).
        data: the recipe's data section (max_length, on_bad_sample; defaults for the entry).
        processor: the model's processor (chat template, tokenizer, image processor).
        seed: default seed for samplers built on this dataset (and for `shuffle`).
        cache_dir: cache folder for `datasets` (default: the vittle cache).

    Raises:
        DataError: unusable source; with on_bad_sample=error, the first bad sample.
    """
    if isinstance(entry, str):
        entry = SourceEntry(entry, limit=data.limit, image_root=data.image_root, format=data.format)
    if cache_dir is None:
        from vittle_cli.model.builtin import cache_root

        cache_dir = cache_root() / "datasets"
    source = load_source(entry.path, entry.image_root, cache_dir, entry.format)
    order = _scan_order(len(source), entry, seed)
    report = DataReport(source=entry.path, total=len(order))
    rows, ids, chars, n_messages, n_images, sample_convs = [], [], [], [], [], []
    has_video: list[bool] = []
    first_error: DataError | None = None
    per_image = image_token_estimate(processor)
    video_ok = takes_video(processor)
    for index, row in _iter_selected(source, order):
        try:
            conv = _prescan_row(row, index, source, processor, video_ok, per_image, data.max_length)
        except SampleProblem as problem:
            sid = sample_id(row, index)
            report.record(problem.kind, sid, problem)
            first_error = first_error or problem_error(sid, problem)
            continue
        rows.append(index)
        ids.append(conv.id)
        chars.append(conv.n_chars)
        n_messages.append(len(conv.messages))
        n_images.append(len(conv.images))
        has_video.append(bool(conv.videos))
        if len(sample_convs) < LENGTH_CALIBRATION_SAMPLES:
            sample_convs.append(conv)
    if first_error is not None and data.on_bad_sample == "error":
        others = report.skipped - 1
        raise DataError(str(first_error) + (f" ({others} more bad samples)" if others else ""))
    if report.counts:
        report.warn()
    if not rows:  # every sample bad: above any limit
        raise BadDataError(report, data.max_bad_fraction, f"data source {entry.path}")
    ratio, per_message = _length_model(processor, sample_convs)
    lengths = [
        round(c * ratio + m * per_message) + n * per_image
        for c, m, n in zip(chars, n_messages, n_images, strict=True)
    ]
    # Video tokens are not in the length estimate: the frame count is known only once a file is decoded.
    has_image = [n > 0 or v for n, v in zip(n_images, has_video, strict=True)]
    video = VideoOptions.from_data(data)
    dataset = TrainDataset(
        source,
        processor,
        rows,
        ids,
        lengths,
        has_image,
        report,
        data.max_length,
        data.on_bad_sample,
        seed,
        video,
    )
    return dataset, report
