"""Find which of POPE's three real layouts a path holds, and load it.

`--pope-root` may point at a LLaVA eval folder (`llava_pope_test.jsonl`, `coco/`, `val2014/`), a POPE
repository checkout or its `output/coco/` folder (`coco_pope_<split>.json`), a parquet file or folder of
the Hugging Face `lmms-lab/POPE` dataset, a `save_to_disk` folder of it, or the hub id itself. Explicit
`--questions/--labels-dir/--image-root` always win over what is found.
"""

from __future__ import annotations

import re
from pathlib import Path

from vittle_cli.data.shift.items import ItemSet
from vittle_cli.data.shift.pope import LABELS_GLOB, load_llava_layout, load_pope_repo_layout
from vittle_cli.data.shift.pope_hf import HUB_ID, is_saved_dataset, load_hf_layout, parquet_files
from vittle_cli.data.shift.suite import PopeFiles
from vittle_cli.errors import DataError

LLAVA_QUESTIONS = "llava_pope_test.jsonl"
LAYOUTS = ("auto", "llava", "pope", "hf")
WHERE = (
    "LLaVA layout (llava_pope_test.jsonl + coco/coco_pope_<split>.json + val2014/: LLaVA's "
    "playground/data/eval/pope, see docs/evaluation.md), POPE repository layout (output/coco/"
    "coco_pope_<split>.json from github.com/RUCAIBox/POPE, with --image-root COCO-val2014/), or Hugging Face "
    f"{HUB_ID} (parquet files, a save_to_disk folder, or the hub id when online)"
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def no_data_message(suite_name: str) -> str:
    return (
        f"suite {suite_name!r} needs the POPE data: pass --pope-root PATH (a folder, parquet file or hub id; "
        f"the layout is detected) holding the {WHERE}; or --questions FILE --labels-dir DIR --image-root DIR"
    )


def _labels_dir(root: Path) -> Path | None:
    for d in (root, root / "coco", root / "output" / "coco"):
        if d.is_dir() and any(d.glob(LABELS_GLOB)):
            return d
    return None


def _image_root(root: Path | None) -> Path | None:
    if root is None:
        return None
    for d in (root / "val2014", root / "images", root / "coco" / "val2014", root.parent / "val2014"):
        if d.is_dir():
            return d
    return None


def detect_layout(files: PopeFiles) -> str:
    """ "llava", "pope" or "hf" for the given files (files.layout unless "auto").

    Raises:
        DataError: nothing recognisable at the root (names the three layouts).
    """
    if files.layout != "auto":
        return files.layout
    if files.questions:
        return "llava"
    if not files.root:
        return "pope" if files.labels_dir else "none"
    root = Path(files.root).expanduser()
    if root.is_file():
        return "hf" if root.suffix == ".parquet" else "llava"
    if root.is_dir():
        if is_saved_dataset(root):
            return "hf"
        if (root / LLAVA_QUESTIONS).is_file():
            return "llava"
        if _labels_dir(root) is not None:
            return "pope"
        if parquet_files(root):
            return "hf"
        raise DataError(f"--pope-root {root} holds no POPE layout; expected the {WHERE}")
    # "owner/name" is a hub id unless its first part is a local folder (then it is a mistyped path)
    if _HUB_ID.match(files.root) and not files.root.startswith((".", "~")) and not root.parent.exists():
        return "hf"
    raise DataError(f"--pope-root {files.root} does not exist; expected a path to the {WHERE}")


def load_pope_files(
    files: PopeFiles, splits: list[str], *, instruction: str, check_images: bool = True, suite_name: str = ""
) -> ItemSet:
    """Load POPE from whichever layout `files` points at (see the module docstring).

    Raises:
        DataError: no data given, an unrecognised root, or any problem of the layout's loader.
    """
    layout = detect_layout(files)
    root = Path(files.root).expanduser() if files.root else None
    if layout == "none":
        raise DataError(no_data_message(suite_name))
    if layout == "hf":
        source = root if root is not None and root.exists() else files.root
        if source is None:
            raise DataError(f"the hf layout needs --pope-root (parquet file or folder, or {HUB_ID})")
        return load_hf_layout(source, splits)
    base = root.parent if root is not None and root.is_file() else root
    image_root = Path(files.image_root) if files.image_root else _image_root(base)
    if image_root is None:
        raise DataError(f"no POPE image folder found next to {root}; pass --image-root DIR (COCO val2014/)")
    if layout == "pope":
        labels = Path(files.labels_dir) if files.labels_dir else _labels_dir(root) if root else None
        if labels is None:
            raise DataError(f"no coco_pope_<split>.json files under {root}; pass --labels-dir DIR")
        return load_pope_repo_layout(
            labels, image_root, splits, instruction=instruction, check_images=check_images
        )
    if files.questions:
        questions = Path(files.questions)
    elif root is not None and root.is_file():
        questions, root = root, root.parent
    else:
        questions = root / LLAVA_QUESTIONS
    labels = Path(files.labels_dir) if files.labels_dir else _labels_dir(root or questions.parent)
    if labels is None:
        raise DataError(
            f"no coco_pope_<split>.json label files next to {questions}; pass --labels-dir DIR (the POPE "
            "repository's output/coco/)"
        )
    return load_llava_layout(
        questions, labels, image_root, splits, instruction=instruction, check_images=check_images
    )
