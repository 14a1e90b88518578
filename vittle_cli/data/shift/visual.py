"""Visual perturbations: the ImageNet-C family (Hendrycks & Dietterich 2019) via `imagecorruptions`.

All 19 corruptions are registered under their ImageNet-C names, severity 1-5. The library rejects images
with a side under 32 pixels, so smaller images are upsampled (bicubic) to a 32-pixel short side,
corrupted, and resized back (box filter). Larger images, including the 64x64 `builtin:shapes` ones, are
corrupted at their own size: every corruption was checked to work there, non-square sizes included.
"""

from __future__ import annotations

import inspect
from functools import partial

import numpy as np
from PIL import Image

from vittle_cli.data.shift.registry import get_perturbation, register_visual, seeded_global_rngs

MIN_SIDE = 32  # imagecorruptions refuses anything smaller

# ImageNet-C's four families; the last name in each row is one of its "validation" (extra) corruptions.
FAMILIES = {
    "noise": ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"],
    "blur": ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"],
    "weather": ["snow", "frost", "fog", "spatter"],
    "digital": ["brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"],
}


def _imagenet_c(name: str, image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Apply ImageNet-C corruption `name`; global RNGs are seeded by the caller."""
    from imagecorruptions import corrupt, corruption_dict

    # impulse_noise and glass_blur draw from their own generators and take an explicit seed.
    kwargs = {"seed": seed} if "seed" in inspect.signature(corruption_dict[name]).parameters else {}
    return corrupt(image, severity=severity, corruption_name=name, **kwargs)


for _family, _names in FAMILIES.items():
    for _name in _names:
        register_visual(_name, family=_family, description=f"ImageNet-C {_name.replace('_', ' ')}")(
            partial(_imagenet_c, _name)
        )


def perturb_image(image: Image.Image, name: str, severity: int, seed: int) -> Image.Image:
    """Return `image` (converted to RGB) under visual perturbation `name` at `severity`, deterministically.

    Raises:
        UsageError: for an unknown perturbation name.
    """
    pert = get_perturbation(name, "visual")
    rgb = image.convert("RGB")
    w, h = rgb.size
    scale = max(1.0, MIN_SIDE / min(w, h))
    work = rgb.resize((round(w * scale), round(h * scale)), Image.BICUBIC) if scale > 1 else rgb
    with seeded_global_rngs(seed):
        out = pert.fn(np.asarray(work, dtype=np.uint8), severity, seed)
    result = Image.fromarray(np.asarray(out, dtype=np.uint8))
    return result.resize((w, h), Image.BOX) if scale > 1 else result
