"""`builtin:shapes`: a synthetic visual instruction set built from code, with no download.

Built once per (seed, sizes) into the vittle cache:

    <root>/train.json                       LLaVA JSON list (llava_v1_5_mix665k form)
    <root>/captions.json                    one caption per training image (`builtin:shapes-captions`), for
                                            a stage 1 as LLaVA's blip_laion_cc_sbu_558k pre-alignment
    <root>/images/train/*.png, eval/*.png   64x64 RGB images of 1-4 coloured shapes
    <root>/pope/questions.jsonl             POPE questions ({question_id, image, text, category})
    <root>/pope/labels/coco_pope_<split>.json  POPE labels ({question_id, image, text, label}), JSON lines
    <root>/objects.json                     per image: scene and objects with boxes (ground truth)

Everything is deterministic from the seed: two builds give byte-identical files.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vittle_cli.data.shapes_draw import draw_image, place_objects, sample_objects
from vittle_cli.data.shapes_questions import (
    DESCRIBE_Q,
    SPLITS,
    ObjectStats,
    describe,
    image_conversation,
    pope_questions,
    text_conversation,
)

SHAPES_NAME = "shapes"
CAPTIONS_NAME = "shapes-captions"  # the same build's stage-1 captions
FORMAT_VERSION = 3  # bump when the generated data changes so old caches are rebuilt
DEFAULT_SIZES = {"train_images": 1500, "train_conversations": 3000, "eval_images": 80}
TEXT_ONLY_FRACTION = 0.03


@dataclass(frozen=True)
class ShapesData:
    """Paths of a built `builtin:shapes` data set. Image paths in the JSON files are relative to image_root."""

    root: Path
    train_json: Path
    captions_json: Path
    image_root: Path
    pope_questions: Path
    pope_labels_dir: Path
    objects_json: Path

    def pope_labels(self, split: str) -> Path:
        return self.pope_labels_dir / f"coco_pope_{split}.json"


def builtin_data_names() -> list[str]:
    return [f"builtin:{SHAPES_NAME}", f"builtin:{CAPTIONS_NAME}"]


def _layout(root: Path) -> ShapesData:
    return ShapesData(
        root=root,
        train_json=root / "train.json",
        captions_json=root / "captions.json",
        image_root=root / "images",
        pope_questions=root / "pope" / "questions.jsonl",
        pope_labels_dir=root / "pope" / "labels",
        objects_json=root / "objects.json",
    )


def resolve_builtin_data(
    name: str = "builtin:shapes",
    seed: int = 0,
    *,
    train_images: int = DEFAULT_SIZES["train_images"],
    train_conversations: int = DEFAULT_SIZES["train_conversations"],
    eval_images: int = DEFAULT_SIZES["eval_images"],
) -> ShapesData:
    """Return a built-in data set, building it into the cache on first use (builtin:shapes-captions is
    the same build: its training file is `captions_json`).

    Raises:
        DataError: for an unknown built-in data name.
    """
    from vittle_cli.errors import DataError
    from vittle_cli.model.builtin import cache_root

    short = name.removeprefix("builtin:")
    if short not in (SHAPES_NAME, CAPTIONS_NAME):
        raise DataError(f"unknown built-in data set {name!r}; known: {', '.join(builtin_data_names())}")
    sizes = {
        "train_images": train_images,
        "train_conversations": train_conversations,
        "eval_images": eval_images,
    }
    dirname = f"{SHAPES_NAME}-v{FORMAT_VERSION}-seed{seed}"
    if sizes != DEFAULT_SIZES:
        dirname += f"-t{train_images}-c{train_conversations}-e{eval_images}"
    target = cache_root() / "data" / dirname
    if _layout(target).train_json.is_file():
        return _layout(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build_shapes(tmp, seed, **sizes)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its copy is identical
            if not _layout(target).train_json.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _layout(target)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _make_images(
    rng: random.Random, n: int, folder: Path, rel: str, meta: dict
) -> list[list[tuple[str, str]]]:
    """Draw n images into folder; record ground truth in meta; return each image's objects."""
    folder.mkdir(parents=True, exist_ok=True)
    all_objects = []
    for i in range(n):
        scene, objects = sample_objects(rng)
        placed = place_objects(rng, objects)
        path = f"{rel}/{i:06d}.png"
        draw_image(rng, placed).save(folder / f"{i:06d}.png", format="PNG")
        meta[path] = {
            "scene": scene,
            "objects": [{"colour": p.colour, "shape": p.shape, "bbox": list(p.bbox)} for p in placed],
        }
        all_objects.append([(p.colour, p.shape) for p in placed])
    return all_objects


def _captions(objects: list[list[tuple[str, str]]]) -> list[dict]:
    """One 'describe' conversation per training image: the answer names every object in reading order."""
    return [
        {
            "id": f"shapes-caption-{i:06d}",
            "image": f"train/{i:06d}.png",
            "conversations": [
                {"from": "human", "value": "<image>\n" + DESCRIBE_Q},
                {"from": "gpt", "value": describe(objs)},
            ],
        }
        for i, objs in enumerate(objects)
    ]


def build_shapes(
    root: Path,
    seed: int = 0,
    *,
    train_images: int = DEFAULT_SIZES["train_images"],
    train_conversations: int = DEFAULT_SIZES["train_conversations"],
    eval_images: int = DEFAULT_SIZES["eval_images"],
) -> ShapesData:
    """Generate the whole data set into `root` (which should be empty). Deterministic from `seed`."""
    data = _layout(Path(root))
    meta: dict[str, dict] = {}
    # Separate streams, so that changing one size does not reshuffle everything else.
    train_objs = _make_images(
        random.Random(f"shapes/{seed}/train-images"), train_images, data.image_root / "train", "train", meta
    )
    eval_objs = _make_images(
        random.Random(f"shapes/{seed}/eval-images"), eval_images, data.image_root / "eval", "eval", meta
    )
    stats = ObjectStats.count(train_objs)

    rng = random.Random(f"shapes/{seed}/conversations")
    n_text = round(TEXT_ONLY_FRACTION * train_conversations)
    n_image = train_conversations - n_text
    text_at = set(rng.sample(range(train_conversations), n_text))  # spread text-only samples through the list
    samples, image_i = [], 0
    for i in range(train_conversations):
        sample_id = f"shapes-{i:06d}"
        if i in text_at:
            samples.append({"id": sample_id, "conversations": text_conversation(rng)})
            continue
        img = image_i % train_images  # every image gets about n_image / train_images conversations
        image_i += 1
        samples.append(
            {
                "id": sample_id,
                "image": f"train/{img:06d}.png",
                "conversations": image_conversation(train_objs[img], stats, rng),
            }
        )
    assert image_i == n_image
    data.train_json.write_text(json.dumps(samples, indent=1) + "\n")
    data.captions_json.write_text(json.dumps(_captions(train_objs), indent=1) + "\n")

    rng = random.Random(f"shapes/{seed}/pope")
    per_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for i, objects in enumerate(eval_objs):
        for split, qs in pope_questions(objects, stats, rng).items():
            per_split[split] += [{"image": f"eval/{i:06d}.png", "text": t, "label": lab} for t, lab in qs]
    questions, qid = [], 1
    data.pope_labels_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        labels = []
        for row in per_split[split]:
            questions.append(
                {"question_id": qid, "image": row["image"], "text": row["text"], "category": split}
            )
            labels.append({"question_id": qid, **row})
            qid += 1
        _write_jsonl(data.pope_labels(split), labels)
    _write_jsonl(data.pope_questions, questions)
    data.objects_json.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return data
