"""A cheap fingerprint of the weights behind a model reference, so that cached answers are never reused
for a model that was retrained in place.

For a local model (model dir, adapter dir, run dir -> its final/, builtin cache) it covers the name, size
and modification time (ns) of every file in the model folder: the weight shards, the bottleneck file, the
adapter, the configs. An adapter also covers its local base. A hub name is fingerprinted by its text only
(the hub cache pins a revision). Hashing the bytes would be exact but costs minutes on a 7B model; a
retrain rewrites the files, which changes their size or mtime. No torch here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vittle_cli.errors import UsageError
from vittle_cli.layout import ADAPTER_CONFIG


def model_folder(reference: str) -> Path | None:
    """The local folder a model reference loads from (a run dir -> its final/, a builtin -> its cache
    folder), or None for a hub name or a reference that does not classify (loading reports that)."""
    from vittle_cli.model.reference import classify_model_ref

    try:
        ref = classify_model_ref(reference)
    except UsageError:
        return None
    if ref.kind == "builtin":
        return Path(ref.source)
    return ref.folder


def _files_digest(folder: Path) -> str:
    entries = []
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            st = f.stat()
            entries.append(f"{f.name}\t{st.st_size}\t{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def weights_fingerprint(reference: str, base: str | None = None) -> str:
    """A short digest of the files of `reference` (and of its adapter's local base), or "hub:<name>".

    Changes whenever a weight, bottleneck, adapter or config file of the model is rewritten.
    """
    folder = model_folder(str(reference))
    if folder is None:
        return f"hub:{reference}"
    parts = [_files_digest(folder)]
    if (folder / ADAPTER_CONFIG).is_file():
        try:
            adapter_base = base or json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get(
                "base_model_name_or_path"
            )
        except (OSError, ValueError):
            adapter_base = base
        if adapter_base:
            base_folder = model_folder(str(adapter_base))
            parts.append(_files_digest(base_folder) if base_folder else f"hub:{adapter_base}")
    return "+".join(parts)
