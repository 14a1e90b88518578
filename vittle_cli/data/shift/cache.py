"""On-disk cache of perturbed images: PNG (lossless) keyed by (image pixels, perturbation spec, seed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from vittle_cli.fileio import write_atomic

CACHE_VERSION = 1  # bump when a perturbation's output changes, so stale PNGs are not reused


def default_cache_dir() -> Path:
    """$VITTLE_CACHE/perturbed (see vittle_cli.model.builtin.cache_root)."""
    from vittle_cli.model.builtin import cache_root

    return cache_root() / "perturbed"


def image_digest(image: Image.Image) -> str:
    """sha256 of an RGB image's size and pixels: the same picture gets the same key wherever it lives."""
    rgb = image.convert("RGB")
    h = hashlib.sha256(f"{rgb.size}".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def cached_perturbed_image(image: Image.Image, spec: str, seed: int, cache_dir: Path, make) -> Image.Image:
    """Return the cached perturbed PNG for (image, spec, seed), or `make()` it and store it atomically."""
    key = hashlib.sha256(f"v{CACHE_VERSION}|{image_digest(image)}|{spec}|{seed}".encode()).hexdigest()
    path = Path(cache_dir) / key[:2] / f"{key}.png"
    if path.is_file():
        with Image.open(path) as im:
            return im.convert("RGB")
    out = make()
    write_atomic(path, lambda tmp: out.save(tmp, format="PNG"))
    return out
